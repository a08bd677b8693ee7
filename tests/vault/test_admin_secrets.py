"""Secrets an admin stores for pipelines: `PUT /admin/secrets/{name}` keeps only an envelope,
`GET /admin/secrets` answers names and times, an `http` step's `{{secrets.NAME}}` reaches
the upstream filled in, and the value appears nowhere else: not in a response, a stored
step, a task's steps or a log line."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import delete, select, text

from app.crypto import envelopes
from app.db.tables import pipelines
from app.db.tables import secrets as secrets_table
from app.db.transaction import transaction
from tests.fakes.kms import FakeKms
from tests.fakes.upstream import Answer, FakeUpstream
from tests.support.function_url import Reply, call
from tests.support.functions import handler
from tests.support.logs import CapturedLogs, capture_logs
from tests.support.pipelines import Customer, Worker, token_for
from tests.support.quota import new_user
from tests.support.settings import settings_env


def admin() -> str:
    return token_for(new_user(role="admin"))


def put_secret(name: str, value: Any, token: str | None = None) -> Reply:
    return call(
        handler("admin-secrets-name"),
        "PUT",
        f"/admin/secrets/{name}",
        body={"value": value},
        token=token or admin(),
    )


def listed(token: str | None = None, **query: Any) -> Reply:
    return call(
        handler("admin-secrets-list"), "GET", "/admin/secrets", token=token or admin(), query=query
    )


def put_pipeline(pipeline_id: str, steps: list[dict[str, Any]]) -> Reply:
    body = {"name": pipeline_id, "cost": 1, "steps": steps}
    return call(
        handler("admin-pipelines-put"),
        "PUT",
        f"/admin/pipelines/{pipeline_id}",
        body=body,
        token=admin(),
    )


def reference(name: str) -> str:
    return "Bearer {{secrets." + name + "}}"


def new_name() -> str:
    return "K_" + secrets.token_hex(6).upper()


def sending(upstream: FakeUpstream, name: str, *, retries: int) -> str:
    """A new pipeline of one step sending secret `name` as Authorization to /render."""
    pipeline = "p-" + secrets.token_hex(4)
    headers = {"Authorization": reference(name)}
    step = {"id": "a", "type": "http", "url": upstream.url("/render"), "retries": retries}
    assert put_pipeline(pipeline, [{**step, "headers": headers}]).status == 200
    return pipeline


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream() as fake:
        fake.script("/render", lambda _c: Answer(200, {"ok": True}))
        yield fake


def test_a_stored_secret_is_an_envelope_and_only_its_name_comes_back() -> None:
    name, value = new_name(), "sk-" + secrets.token_urlsafe(24)
    reply = put_secret(name, value)
    assert (reply.status, reply.body) == (204, "")
    with transaction() as tx:
        row = tx.execute(select(secrets_table).where(secrets_table.c.name == name)).one()
    assert envelopes.is_envelope(row.envelope) and value not in row.envelope
    assert row.version == 1

    page = listed(limit=100)
    assert page.status == 200 and value not in page.body
    (item,) = [i for i in page.json()["items"] if i["name"] == name]
    assert set(item) == {"name", "updated_at"}

    assert put_secret(name, value + "2").status == 204
    with transaction() as tx:
        again = tx.execute(select(secrets_table).where(secrets_table.c.name == name)).one()
    assert again.version == 2 and again.envelope != row.envelope


@pytest.mark.parametrize(
    ("name", "value", "where"),
    [
        ("lower", "v", "name"),
        ("1ABC", "v", "name"),
        ("A" * 65, "v", "name"),
        ("OK_NAME", "", "value"),
        ("OK_NAME", "x" * 4097, "value"),
        ("OK_NAME", "\u00e9" * 2049, "value"),  # 4098 bytes of UTF-8
        ("OK_NAME", 42, "value"),
    ],
)
def test_a_bad_name_or_value_is_422_and_stores_nothing(name: str, value: Any, where: str) -> None:
    reply = put_secret(name, value)
    assert (reply.status, reply.json()["code"]) == (422, "VALIDATION_ERROR"), reply.body
    assert where in json.dumps(reply.json()["details"])
    with transaction() as tx:
        assert tx.execute(select(secrets_table).where(secrets_table.c.name == name)).first() is None


def test_a_user_is_403_on_both_routes() -> None:
    user = token_for(new_user())
    assert put_secret("USER_TRY", "v", token=user).json()["code"] == "FORBIDDEN"
    assert listed(token=user).json()["code"] == "FORBIDDEN"


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": "Bearer {{secrets.NEVER_STORED_X}}"},
        {"X-Key": "{{secrets.lower_case}}"},
        {"Idempotency-Key": "mine"},
        {"content-type": "text/plain"},
        {"CONTENT-LENGTH": "3"},
        {"Host": "elsewhere.example"},
        {"Bad Header": "v"},
        {"X-Multi": "a\r\nInjected: b"},
        {"X-Lang": "zh-\u4e2d\u6587"},  # beyond Latin-1: http.client cannot encode it
        {"X-Emoji": "ok \U0001f600"},
    ],
)
def test_a_pipeline_with_a_header_it_may_not_send_is_422(headers: dict[str, str]) -> None:
    step = {"id": "a", "type": "http", "url": "http://127.0.0.1:9/x", "headers": headers}
    reply = put_pipeline("p-" + secrets.token_hex(4), [step])
    assert (reply.status, reply.json()["code"]) == (422, "VALIDATION_ERROR"), reply.body


@pytest.mark.parametrize("name", ["JWT_SECRET", "WECHATPAY_PRIVATE_KEY", "DATABASE_URL"])
def test_a_pipeline_may_not_send_a_secret_stored_under_a_settings_name(name: str) -> None:
    # Stored as the README shows (make -s secret-put NAME=WECHATPAY_PRIVATE_KEY): the
    # platform's own keys, which no upstream is ever sent.
    assert put_secret(name, "the-platforms-own").status == 204
    try:
        step = {"id": "a", "type": "http", "url": "http://127.0.0.1:9/x"}
        pipeline = "p-" + secrets.token_hex(4)
        headers = {"Authorization": reference(name)}
        reply = put_pipeline(pipeline, [{**step, "headers": headers}])
        assert (reply.status, reply.json()["code"]) == (422, "VALIDATION_ERROR"), reply.body
        assert name in reply.json()["details"][0]["msg"]
        assert put_pipeline(pipeline, [step]).status == 200  # the same pipeline without it
    finally:
        with transaction() as tx:
            tx.execute(delete(secrets_table).where(secrets_table.c.name == name))


@pytest.mark.parametrize(
    "value",
    [
        "sk-\u4e2d\u6587",  # beyond Latin-1
        "line1\nline2",
        "-----BEGIN PRIVATE KEY-----\r\nMIIE\r\n-----END PRIVATE KEY-----",
    ],
)
def test_a_secret_no_header_can_carry_fails_its_step_naming_the_header(
    worker: Worker, upstream: FakeUpstream, value: str
) -> None:
    name = new_name()
    assert put_secret(name, value).status == 204  # a setting's PEM key is stored so, too
    pipeline = sending(upstream, name, retries=2)
    user = Customer(quota=1)
    task = user.wait(user.create(pipeline, {"text": "hi"}).json()["id"])
    assert task["status"] == "failed"
    message = task["error"]["message"]
    assert "the header Authorization cannot carry its secret's value (called once)" in message
    assert value not in json.dumps(task) and "line1" not in json.dumps(task)
    assert upstream.calls_to("/render") == []
    assert user.quota() == (1, 0)


def test_the_upstream_gets_the_value_and_nothing_else_ever_holds_it(
    worker: Worker, upstream: FakeUpstream
) -> None:
    name, first, second = (
        new_name(),
        "sk-" + secrets.token_urlsafe(24),
        "sk-" + secrets.token_urlsafe(24),
    )
    assert put_secret(name, first).status == 204
    pipeline = "p-" + secrets.token_hex(4)
    step = {
        "id": "a",
        "type": "http",
        "url": upstream.url("/render"),
        "headers": {"Authorization": reference(name), "X-Plain": "visible"},
    }
    fork = {"id": "f", "type": "fork", "branches": [{k: v for k, v in step.items() if k != "id"}]}
    assert put_pipeline(pipeline, [step, fork]).status == 200
    user = Customer(quota=2)

    with capture_logs() as logs:
        created = user.create(pipeline, {"text": "hi"})
        task = user.wait(created.json()["id"])
        assert task["status"] == "succeeded", task
        assert put_secret(name, second).status == 204
        later = user.wait(user.create(pipeline, {"text": "again"}).json()["id"])

    sent = [c.headers["authorization"] for c in upstream.calls_to("/render")]
    assert sent == [f"Bearer {first}"] * 2 + [f"Bearer {second}"] * 2  # the next task, the new
    assert all(c.headers["x-plain"] == "visible" for c in upstream.calls_to("/render"))

    seen = [created.body, json.dumps(task), json.dumps(later), user.list().body]
    seen.append(logs.text)
    with transaction() as tx:
        for table in ("tasks", "task_steps", "pipelines", "idempotency_keys"):
            seen += [str(tuple(row)) for row in tx.execute(text(f"SELECT * FROM {table}"))]
    for value in (first, second):
        assert not [where for where in seen if value in where]


def test_a_secret_that_cannot_be_had_fails_the_step_naming_nothing_of_it(
    worker: Worker, upstream: FakeUpstream
) -> None:
    name = new_name()
    assert put_secret(name, "sk-gone").status == 204
    pipeline = sending(upstream, name, retries=0)
    other = new_name()
    assert put_secret(other, "sk-other").status == 204
    with transaction() as tx:  # another secret's envelope copied over it: it does not open
        moved = tx.execute(
            select(secrets_table.c.envelope).where(secrets_table.c.name == other)
        ).scalar_one()
        tx.execute(
            secrets_table.update()
            .where(secrets_table.c.name == name)
            .values(envelope=moved, version=secrets_table.c.version + 1)
        )
    user = Customer(quota=1)
    with capture_logs() as logs:
        task = user.wait(user.create(pipeline, {}).json()["id"])
    assert task["status"] == "failed"
    assert "a secret the step sends is not available" in task["error"]["message"]
    assert name not in json.dumps(task)  # which one, and why, is the operator's to read
    (line,) = logs.where(message="step secret not available", secret=name)
    assert "sealed for another name" in line["reason"]
    assert "sk-gone" not in logs.text and "sk-other" not in logs.text
    assert upstream.calls_to("/render") == []
    assert user.quota() == (1, 0)


def test_a_pipeline_saved_naming_a_settings_secret_fails_its_step_sending_nothing(
    worker: Worker, upstream: FakeUpstream
) -> None:
    # A pipeline saved before saves refused such a name: its step does not send it either.
    stored = new_name()
    assert put_secret(stored, "sk-upstream").status == 204
    pipeline = sending(upstream, stored, retries=0)
    assert put_secret("JWT_SECRET", "the-platforms-own").status == 204
    try:
        with transaction() as tx:
            steps = tx.execute(
                select(pipelines.c.steps).where(pipelines.c.id == pipeline)
            ).scalar_one()
            renamed = json.loads(json.dumps(steps).replace(stored, "JWT_SECRET"))
            tx.execute(pipelines.update().where(pipelines.c.id == pipeline).values(steps=renamed))
        user = Customer(quota=1)
        with capture_logs() as logs:
            task = user.wait(user.create(pipeline, {}).json()["id"])
        assert task["status"] == "failed"
        assert "a secret the step sends is not available" in task["error"]["message"]
        (line,) = logs.where(message="step secret not available", secret="JWT_SECRET")
        assert "never sent upstream" in line["reason"]
        assert "the-platforms-own" not in logs.text
        assert upstream.calls_to("/render") == []
    finally:
        with transaction() as tx:
            tx.execute(delete(secrets_table).where(secrets_table.c.name == "JWT_SECRET"))


def test_a_secret_a_setting_names_is_refused_on_save_and_sent_by_no_step(
    worker: Worker, upstream: FakeUpstream
) -> None:
    """A setting's secret stored under a name of its own (README: JWT_SECRET=secret:
    JWT_SECRET_2027) is the platform's as much as one stored under the variable's name."""
    stored = new_name()
    assert put_secret(stored, "the-platforms-own").status == 204
    pipeline = sending(upstream, stored, retries=0)  # saved before a setting named it
    step = {"id": "a", "type": "http", "url": upstream.url("/render")}
    with settings_env(WECHAT_SECRET=f"secret:{stored}"):
        headers = {"Authorization": reference(stored)}
        reply = put_pipeline("p-" + secrets.token_hex(4), [{**step, "headers": headers}])
        assert reply.status == 422, reply.body
        assert reply.json()["code"] == "VALIDATION_ERROR"
        assert f"{stored} is a setting's secret" in reply.json()["details"][0]["msg"]
        user = Customer(quota=1)
        with capture_logs() as logs:
            task = user.wait(user.create(pipeline, {}).json()["id"])
        assert task["status"] == "failed"
        (line,) = logs.where(message="step secret not available", secret=stored)
        assert "never sent upstream" in line["reason"]
        assert "the-platforms-own" not in logs.text
    assert upstream.calls_to("/render") == []


def run_while_kms_fails(
    kms: FakeKms, upstream: FakeUpstream, value: str, *, retries: int, failures: int
) -> tuple[dict[str, Any], CapturedLogs, str, str]:
    """A task whose step sends a secret stored under one key, run by an instance of other
    settings (so it asks KMS for the data key) while KMS fails `failures` times: the task,
    the logs, the secret's name and the key."""
    key, name = kms.create_key(), new_name()
    with settings_env(**kms.env(key)):
        assert put_secret(name, value).status == 204
    with settings_env(**kms.env(kms.create_key())):
        pipeline = sending(upstream, name, retries=retries)
        kms.fail_next("Decrypt", times=failures)
        user = Customer(quota=1)
        with capture_logs() as logs:
            task = user.wait(user.create(pipeline, {}).json()["id"])
        assert user.quota() == ((0, 0) if task["status"] == "succeeded" else (1, 0))
    return task, logs, name, key


def test_a_kms_that_fails_for_a_moment_is_retried_like_a_down_upstream(
    kms: FakeKms, worker: Worker, upstream: FakeUpstream
) -> None:
    task, _logs, _name, _key = run_while_kms_fails(
        kms, upstream, "sk-after-a-blip", retries=2, failures=1
    )
    assert task["status"] == "succeeded", task
    assert kms.count("Decrypt") == 2
    sent = [c.headers["authorization"] for c in upstream.calls_to("/render")]
    assert sent == ["Bearer sk-after-a-blip"]


def test_a_kms_down_past_the_retries_fails_the_step_with_a_plain_message(
    kms: FakeKms, worker: Worker, upstream: FakeUpstream
) -> None:
    task, logs, name, key = run_while_kms_fails(
        kms, upstream, "sk-never-sent", retries=1, failures=5
    )
    assert task["status"] == "failed"
    message = task["error"]["message"]
    assert "a secret the step sends is not available" in message, message
    for detail in (name, key, "KMS", "InternalError"):
        assert detail not in json.dumps(task)
    assert kms.count("Decrypt") == 2  # once per call the step was allowed
    assert len(logs.where(message="step secret not available", secret=name)) == 2
    assert "sk-never-sent" not in logs.text
    assert upstream.calls_to("/render") == []


def test_an_upstream_that_echoes_a_secret_has_it_kept_out_of_the_output(
    worker: Worker, upstream: FakeUpstream
) -> None:
    """An upstream that answers with what it was sent (a debugging echo, request metadata)
    would put the secret in the step's output: the task's view, the stored rows and the next
    call's `previous`, where the customer reads it. Each place it appears in the answer is
    `[secret]`; the rest of the answer stays."""
    name, value = new_name(), "sk-" + secrets.token_urlsafe(24)
    assert put_secret(name, value).status == 204
    upstream.script(
        "/echo",
        lambda c: Answer(
            200,
            {
                "headers": c.headers,
                "nested": [{"note": f"key={c.headers['authorization'][7:]}!"}],
                c.headers["authorization"]: "a key",
                "kept": "visible",
            },
        ),
    )
    pipeline = "p-" + secrets.token_hex(4)
    steps = [
        {
            "id": "a",
            "type": "http",
            "url": upstream.url("/echo"),
            "headers": {"Authorization": reference(name)},
        },
        {"id": "b", "type": "http", "url": upstream.url("/render")},
    ]
    assert put_pipeline(pipeline, steps).status == 200
    user = Customer(quota=1)
    task = user.wait(user.create(pipeline, {"text": "hi"}).json()["id"])
    assert task["status"] == "succeeded", task
    [echoed] = upstream.calls_to("/echo")
    assert echoed.headers["authorization"] == f"Bearer {value}"
    output = task["steps"][0]["output"]
    assert output["headers"]["authorization"] == "Bearer [secret]"
    assert output["nested"] == [{"note": "key=[secret]!"}]
    assert output["Bearer [secret]"] == "a key" and output["kept"] == "visible"
    [after] = upstream.calls_to("/render")
    seen = [json.dumps(task), json.dumps(after.body)]
    with transaction() as tx:
        seen += [str(tuple(row)) for row in tx.execute(text("SELECT * FROM task_steps"))]
    assert not [where for where in seen if value in where]


def test_an_answer_its_blanked_secrets_make_too_large_is_a_failed_attempt(
    worker: Worker, upstream: FakeUpstream
) -> None:
    """A one-character secret echoed 200,000 times becomes 1.6 MB of `[secret]`: past what
    a step's output may be, so the attempt fails as a too-large answer does."""
    name = new_name()
    assert put_secret(name, "Z").status == 204
    upstream.script("/echo", lambda c: Answer(200, {"text": "Z" * 200_000}))
    pipeline = "p-" + secrets.token_hex(4)
    step = {"id": "a", "type": "http", "url": upstream.url("/echo"), "retries": 0}
    assert put_pipeline(pipeline, [{**step, "headers": {"X-Key": reference(name)}}]).status == 200
    user = Customer(quota=1)
    task = user.wait(user.create(pipeline, {"text": "hi"}).json()["id"])
    assert task["status"] == "failed", task
    assert "too large with its secrets blanked" in task["error"]["message"]
