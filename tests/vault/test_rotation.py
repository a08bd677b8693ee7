"""Rotation: with KMS_KEY_ID naming a new key, the `secrets-rekey` job seals every stored
secret again under it; pipelines keep sending the right values, also once the old key is
disabled at KMS. While KMS cannot seal, a PUT is 503 and the job counts what it left."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import select

from app.config import get_settings
from app.crypto import envelopes, providers
from app.db.tables import secrets as secrets_table
from app.db.transaction import transaction
from app.vault import store
from tests.fakes.kms import FakeKms
from tests.fakes.upstream import Answer, FakeUpstream
from tests.support import log_guard
from tests.support.function_url import call
from tests.support.functions import handler
from tests.support.lock_waits import wait_for_a_lock_wait
from tests.support.logs import capture_logs
from tests.support.pipelines import Customer, Worker
from tests.support.settings import settings_env
from tests.vault.test_admin_secrets import admin, new_name, put_pipeline, put_secret, reference


def rows(names: list[str]) -> dict[str, tuple[str, int]]:
    with transaction() as tx:
        found = tx.execute(
            select(secrets_table.c.name, secrets_table.c.key_id, secrets_table.c.version).where(
                secrets_table.c.name.in_(names)
            )
        )
        return {r.name: (r.key_id, r.version) for r in found}


def rekey() -> dict[str, object]:
    reply = call(handler("admin-jobs-run"), "POST", "/admin/jobs/secrets-rekey", token=admin())
    assert reply.status == 200, reply.body
    return dict(reply.json())


def test_rekey_moves_every_secret_to_the_new_key_and_calls_keep_their_values(
    kms: FakeKms, worker: Worker
) -> None:
    old_key, new_key = kms.create_key(), kms.create_key()
    names = [new_name(), new_name()]
    values = {name: f"sk-{name.lower()}" for name in names}
    with FakeUpstream() as upstream, settings_env(**kms.env(old_key)):
        upstream.script("/render", lambda _c: Answer(200, {"ok": True}))
        for name, value in values.items():
            assert put_secret(name, value).status == 204
        headers = {"Authorization": reference(names[0]), "X-Second": reference(names[1])}
        step = {"id": "a", "type": "http", "url": upstream.url("/render"), "headers": headers}
        pipeline = "p-rekey-" + names[0].lower()
        assert put_pipeline(pipeline, [step]).status == 200
        user = Customer(quota=2)
        assert user.wait(user.create(pipeline, {}).json()["id"])["status"] == "succeeded"
        before = rows(names)
        assert {key for key, _ in before.values()} == {old_key}

        with settings_env(KMS_KEY_ID=new_key):
            assert rekey()["rekeyed"] >= 2
            after = rows(names)
            assert {key for key, _ in after.values()} == {new_key}
            assert all(after[n][1] == before[n][1] + 1 for n in names)
            assert rekey()["rekeyed"] == 0  # nothing left under another key
            kms.disable(old_key)
            assert user.wait(user.create(pipeline, {}).json()["id"])["status"] == "succeeded"

    sent = [(c.headers["authorization"], c.headers["x-second"]) for c in upstream.calls]
    expected = (f"Bearer {values[names[0]]}", f"Bearer {values[names[1]]}")
    assert sent == [expected, expected]


@pytest.mark.parametrize(
    ("disabled", "counted"),
    [
        ("old", "unreadable"),  # the row does not open: the others still move
        ("new", "unsealed"),  # nothing can be sealed: the job stops, leaving the rest
    ],
)
def test_a_secret_the_job_cannot_move_is_left_as_it_is_and_counted(
    kms: FakeKms, caplog: pytest.LogCaptureFixture, disabled: str, counted: str
) -> None:
    old_key, new_key = kms.create_key(), kms.create_key()
    name = new_name()
    with settings_env(**kms.env(old_key)):
        assert put_secret(name, "sk-lost-with-its-key").status == 204
    before = rows([name])
    kms.disable(old_key if disabled == "old" else new_key)
    with settings_env(**kms.env(new_key)):
        report = rekey()
    assert report[counted] >= 1
    assert rows([name]) == before
    lines = [r.getMessage() + str(r.__dict__) for r in caplog.records]
    assert any("secret not rekeyed" in line and name in line for line in lines)
    assert not any("sk-lost-with-its-key" in line for line in lines)


@pytest.mark.parametrize("kms_state", ["unreachable", "failing"])
def test_the_job_stops_at_the_first_row_kms_cannot_open_for_want_of_kms(
    kms: FakeKms, kms_state: str
) -> None:
    """KMS unreachable, or answering its own error, fails every row's Decrypt alike, as it
    would fail their sealing: the job stops at the first, leaving it and the rest `unsealed`
    for the next run, instead of asking KMS (a timeout each) for every row in turn and
    counting them `unreadable`, which says their key is gone."""
    old_key, new_key = kms.create_key(), kms.create_key()
    names = [new_name(), new_name()]
    with settings_env(**kms.env(old_key)):
        for name in names:
            assert put_secret(name, "sk-kept").status == 204
    before = rows(names)
    env = kms.env(new_key)
    if kms_state == "unreachable":  # nothing listens on the discard port
        env["TENCENTCLOUD_API_ENDPOINT"] = "127.0.0.1:9"
    else:
        kms.fail_next("Decrypt", 100)
    with settings_env(**env), capture_logs() as logs:
        report = store.rekey()
    assert rows(names) == before
    assert report["unsealed"] >= 1, report
    refused = logs.where(message="secret not rekeyed")
    unavailable = [line for line in refused if "could not be reached" in line["reason"]]
    assert len(unavailable) == 1, unavailable
    # Rows of other tests may be unreadable (their key gone); the row KMS could not open
    # is not counted with them.
    assert report["unreadable"] == len(refused) - 1, (report, refused)
    assert "sk-kept" not in logs.text


@pytest.mark.parametrize("kms_state", ["refusing", "unreachable"])
def test_a_secret_that_cannot_be_sealed_now_is_503_and_nothing_changes(
    kms: FakeKms, kms_state: str
) -> None:
    key = kms.create_key()
    name = new_name()
    with settings_env(**kms.env(key)):
        assert put_secret(name, "sk-first").status == 204
    before = rows([name])
    env = kms.env(key)
    if kms_state == "refusing":
        kms.disable(key)
    else:  # nothing listens on the discard port
        env["TENCENTCLOUD_API_ENDPOINT"] = "127.0.0.1:9"
    fresh = new_name()
    with settings_env(**env), capture_logs() as logs:
        replaced = put_secret(name, "sk-second-value")
        created = put_secret(fresh, "sk-second-value")
    for reply in (replaced, created):
        assert (reply.status, reply.json()["code"]) == (503, "SERVICE_UNAVAILABLE"), reply.body
        assert "sk-second-value" not in reply.body and key not in reply.body
    assert rows([name, fresh]) == before
    assert logs.where(message="secret not stored", secret=fresh)
    assert "sk-second-value" not in logs.text


def test_a_row_moved_to_the_new_key_while_the_job_waited_for_it_is_left_as_it_is(
    kms: FakeKms,
) -> None:
    """What another run of the job, or a PUT, sealed under the new key while this run waited
    for the row is not sealed again: no second GenerateDataKey, no version that makes every
    instance open the same value again, no row counted as moved twice."""
    old_key, new_key = kms.create_key(), kms.create_key()
    name = new_name()
    with settings_env(**kms.env(old_key)):
        assert put_secret(name, "sk-before").status == 204
    with settings_env(**kms.env(new_key)), ThreadPoolExecutor(1) as pool:
        log_guard.remember_stored("sk-after")  # stored without PUT /admin/secrets
        current = envelopes.seal(b"sk-after", name, providers.from_settings(get_settings()))
        with transaction() as tx:  # the other writer holds the row, as a PUT's commit does
            tx.execute(
                select(secrets_table.c.name).where(secrets_table.c.name == name).with_for_update()
            )
            job = pool.submit(rekey)
            wait_for_a_lock_wait()
            version = store.write_row(tx, name, current)
        job.result(timeout=60)
        assert rows([name]) == {name: (new_key, version)}
        assert store.values([name]) == {name: "sk-after"}
        with transaction() as tx:
            envelope = tx.execute(
                select(secrets_table.c.envelope).where(secrets_table.c.name == name)
            ).scalar_one()
        assert envelope == current
