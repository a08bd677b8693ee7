"""The invite-code pool: concurrent claims, inline codes when empty, the refill job (one
run at a time: concurrent refills never overfill)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import delete, func, select

from app.db.tables import invite_codes
from app.db.transaction import transaction
from app.errors import RunBusy
from app.identity import invites
from app.observability.metrics import JOB_RUNS
from tests.identity.conftest import Flows
from tests.support.function_url import call
from tests.support.functions import handler
from tests.support.logs import capture_logs
from tests.support.pipelines import token_for
from tests.support.quota import new_user
from tests.support.runs import end_live_runs, plant_live_run

JOB = "invite-refill"


def _empty_pool() -> None:
    with transaction() as conn:
        conn.execute(delete(invite_codes).where(invite_codes.c.claimed_by.is_(None)))


@pytest.fixture(autouse=True)
def _no_live_run() -> Iterator[None]:
    yield
    end_live_runs(JOB)


def test_codes_are_eight_unambiguous_characters() -> None:
    codes = {invites.new_code() for _ in range(500)}
    assert len(codes) == 500
    assert all(len(c) == 8 and set(c) <= set(invites.ALPHABET) for c in codes)
    assert not set("01ILO") & set(invites.ALPHABET)


def test_refill_tops_the_pool_up_to_the_target() -> None:
    _empty_pool()
    report = invites.refill(target=250)
    assert report == {"job": "invite-refill", "created": 250, "available": 250}
    assert invites.refill(target=250) == {"job": "invite-refill", "created": 0, "available": 250}
    assert invites.refill(target=260)["created"] == 10


def test_twenty_concurrent_claims_empty_the_pool_without_a_duplicate() -> None:
    _empty_pool()
    invites.refill(target=20)
    with transaction() as conn:
        pool = set(
            conn.execute(
                select(invite_codes.c.code).where(invite_codes.c.claimed_by.is_(None))
            ).scalars()
        )
    assert len(pool) == 20
    barrier = threading.Barrier(20)
    claimed: list[str | None] = [None] * 20

    def claim(i: int) -> None:
        barrier.wait()
        with transaction() as conn:
            claimed[i] = invites.claim(conn, f"claimer-{i}")

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(claimed)) == 20
    assert set(claimed) == pool  # every one from the pool, none generated inline
    assert invites.available() == 0
    with transaction() as conn:
        owners = dict(
            conn.execute(
                select(invite_codes.c.code, invite_codes.c.claimed_by).where(
                    invite_codes.c.code.in_(pool)
                )
            ).all()
        )
    assert sorted(owners.values()) == sorted(f"claimer-{i}" for i in range(20))


def test_an_empty_pool_never_fails_a_registration(flows: Flows) -> None:
    _empty_pool()
    user = flows.registered()["user"]
    assert user["invite_code"] and set(user["invite_code"]) <= set(invites.ALPHABET)
    with transaction() as conn:
        owner = conn.execute(
            select(invite_codes.c.claimed_by).where(invite_codes.c.code == user["invite_code"])
        ).scalar()
    assert owner == user["id"]


def test_a_failed_registration_gives_its_code_back() -> None:
    _empty_pool()
    invites.refill(target=1)
    try:
        with transaction() as conn:
            invites.claim(conn, "doomed")
            raise RuntimeError("the registration failed")
    except RuntimeError:
        pass
    assert invites.available() == 1


def test_the_timer_function_refills(flows: Flows) -> None:
    from tests.support.settings import settings_env

    _empty_pool()
    with settings_env(INVITE_POOL_TARGET="30"):
        event = {
            "Type": "Timer",
            "TriggerName": "invite-refill",
            "Time": "2026-11-29T13:00:00Z",
            "Message": "",
        }
        report = handler("invite-refill")(event, {"function_name": "invite-refill"})
    assert report["job"] == "invite-refill" and report["created"] == 30
    with transaction() as conn:
        count = conn.execute(
            select(func.count())
            .select_from(invite_codes)
            .where(invite_codes.c.claimed_by.is_(None))
        ).scalar()
    assert count == 30


def test_concurrent_refills_end_with_exactly_the_target() -> None:
    """The timer firing while an admin's run is live, or several at once: one run fills the
    pool, the others are refused as busy (or find it full), and none inserts past the
    target."""
    _empty_pool()
    runs = 8
    start = threading.Barrier(runs)
    reports: list[dict[str, Any]] = []
    refused: list[RunBusy] = []

    def one() -> None:
        start.wait()
        try:
            reports.append(invites.refill(target=300))
        except RunBusy as busy:
            refused.append(busy)

    threads = [threading.Thread(target=one) for _ in range(runs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert invites.available() == 300
    assert sum(report["created"] for report in reports) == 300
    assert len(reports) + len(refused) == runs and reports
    assert invites.refill(target=300)["created"] == 0  # the job is free again


def test_an_admin_asking_while_a_refill_is_live_is_answered_503() -> None:
    _empty_pool()
    plant_live_run(JOB)
    admin = token_for(new_user(role="admin"), role="admin")
    busy_before = JOB_RUNS.value(job_name=JOB, outcome="busy")
    busy = call(handler("admin-jobs-run"), "POST", "/admin/jobs/invite-refill", token=admin)
    assert busy.status == 503, busy.body
    assert busy.json()["code"] == "SERVICE_UNAVAILABLE"
    assert "try again once it has ended" in busy.json()["message"]
    assert invites.available() == 0
    assert JOB_RUNS.value(job_name=JOB, outcome="busy") == busy_before + 1


def test_a_timer_turn_while_a_refill_is_live_is_skipped_not_failed() -> None:
    """SCF retries an asynchronous invocation that fails: a turn that found the last one
    still running ends without error, so no retry lands on top of the live run."""
    _empty_pool()
    plant_live_run(JOB)
    event = {"Type": "Timer", "TriggerName": JOB, "Time": "2026-12-06T04:00:00Z", "Message": ""}
    before = {o: JOB_RUNS.value(job_name=JOB, outcome=o) for o in ("busy", "failed", "ok")}
    with capture_logs() as logs:
        report = handler(JOB)(event, {"function_name": JOB})
    assert report == {"job": JOB, "busy": True}
    (line,) = logs.where(message="job run skipped", job=JOB)
    assert line["outcome"] == "busy" and "still running" in line["reason"]
    assert line["level"] == "info" and "exception" not in line
    after = {o: JOB_RUNS.value(job_name=JOB, outcome=o) for o in ("busy", "failed", "ok")}
    assert after == {**before, "busy": before["busy"] + 1}
    assert invites.available() == 0
