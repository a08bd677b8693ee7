"""A saga-sweeper run is bounded and fair: it takes no task once its budget is spent (from
its invocation's time limit, the timer's or admin-jobs-run's), each stage has its share of
it, so a backlog in one stage no longer keeps the later ones from their turn; and a stage
that fails as a whole loses none of the other stages' counts, while the run still ends
failed.

In a database of their own, so that the overdue tasks and left reservations are exactly the
test's."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import insert, select, update

from app.clock import utcnow
from app.db.tables import idempotency_keys, tasks
from app.db.transaction import transaction
from app.ids import new_id
from app.runner import sweeper
from app.runner.sweeper import SweepIncomplete
from infra import manifest
from tests.support.audit import actions_on
from tests.support.database import a_database_of_its_own
from tests.support.function_url import call
from tests.support.functions import admin_job, handler
from tests.support.logs import capture_logs
from tests.support.pipelines import Customer, new_pipeline, token_for
from tests.support.queue import backend_in_place
from tests.support.quota import new_user

# The run's budget: the expiry's share of it is BUDGET_S / 4 (three stages that take task
# after task, and the single-call ones). Its first task is held HOLD_S, longer than that
# share, by a lock on its row, from before the run starts: 3 s past the share, so a slow
# start of the run still meets the lock past its share; the expiry takes no other, and
# BUDGET_S - HOLD_S is left for the other stages, ample for the few rows each finds here.
BUDGET_S = 8.0
HOLD_S = 5.0
OVERDUE = 3


@pytest.fixture
def own_database() -> Iterator[None]:
    """A database of the test's own, migrated."""
    with a_database_of_its_own("sweeper"):
        yield


def overdue_tasks(count: int) -> list[str]:
    """`count` queued tasks started long ago (past any TASK_MAX_RUNTIME_S), oldest first."""
    now = utcnow()
    rows = [
        {
            "id": new_id(),
            "user_id": new_id(),
            "pipeline_id": "p-sweeper",
            "status": "queued",
            "cost": 0,
            "input": {},
            "steps": [],
            "created_at": now - timedelta(days=30, seconds=count - i),
            "updated_at": now - timedelta(days=30),
        }
        for i in range(count)
    ]
    with transaction() as tx:
        tx.execute(insert(tasks), rows)
    return [row["id"] for row in rows]


def left_reservation_and_expired_key() -> str:
    """A task that ended with its reservation left `reserved` (as an older release could
    leave it), created under an Idempotency-Key now past its 24 h."""
    user = Customer(quota=1)
    pipeline = new_pipeline([{"id": "a", "type": "sim", "duration_ms": 1}])
    task_id = user.create(pipeline, key="old-key").json()["id"]
    with transaction() as tx:
        tx.execute(update(tasks).where(tasks.c.id == task_id).values(status="failed"))
        tx.execute(update(idempotency_keys).values(expires_at=utcnow() - timedelta(seconds=1)))
    return task_id


def status(task_id: str) -> str:
    with transaction() as tx:
        return str(tx.execute(select(tasks.c.status).where(tasks.c.id == task_id)).scalar_one())


def timer_run(budget_s: float = BUDGET_S) -> dict[str, Any]:
    """The saga-sweeper function invoked as SCF invokes it, with a time limit that leaves
    its run `budget_s` to take tasks in."""
    limit_s = sweeper.AFTER_LAST_TURN_S + budget_s
    context = {"function_name": "saga-sweeper", "time_limit_in_ms": int(limit_s * 1000)}
    return dict(handler("saga-sweeper")({"Type": "Timer"}, context))


class RowHeld:
    """A transaction elsewhere holding a task's row locked for `hold_s`, as a slow turn of
    that task (a cancel, the worker's end of it) would."""

    def __init__(self, task_id: str, hold_s: float) -> None:
        self.locked = threading.Event()
        self.thread = threading.Thread(target=self._hold, args=(task_id, hold_s))

    def _hold(self, task_id: str, hold_s: float) -> None:
        with transaction() as tx:
            tx.execute(select(tasks.c.id).where(tasks.c.id == task_id).with_for_update())
            self.locked.set()
            threading.Event().wait(hold_s)

    def __enter__(self) -> RowHeld:
        self.thread.start()
        assert self.locked.wait(30), "the row was never locked"
        return self

    def __exit__(self, *_exc: object) -> None:
        self.thread.join(60)


def test_a_backlog_in_one_stage_leaves_the_later_stages_their_turn(own_database: None) -> None:
    overdue = overdue_tasks(OVERDUE)
    left = left_reservation_and_expired_key()

    with RowHeld(overdue[0], HOLD_S):
        first = timer_run()

    # The oldest was taken first; its turn outlasted the expiry's share, so no other was.
    assert first["expired"] == 1, first
    assert [status(task_id) for task_id in overdue] == ["failed", "queued", "queued"]
    assert first["stopped_early"] is True
    # The later stages still had their turn in this run.
    assert first["settled"] == 1 and first["keys_purged"] == 1, first
    assert status(left) == "failed"
    # The next run takes what this one did not reach.
    second = timer_run()
    assert second["expired"] == OVERDUE - 1 and second["stopped_early"] is False, second
    assert [status(task_id) for task_id in overdue] == ["failed"] * OVERDUE


def test_a_run_whose_invocation_is_ending_takes_no_task(own_database: None) -> None:
    overdue = overdue_tasks(1)
    report = timer_run(budget_s=-1.0)
    assert report["expired"] == 0 and report["stopped_early"] is True, report
    assert status(overdue[0]) == "queued"


def test_an_admins_run_is_bounded_by_its_own_invocations_end(own_database: None) -> None:
    # admin-jobs-run invoked with less time than the run needs after its last turn: the
    # run takes no task, as its timer's would, rather than its whole RUN_BUDGET_S.
    overdue = overdue_tasks(1)
    admin = new_user(role="admin")
    reply = call(
        handler("admin-jobs-run"),
        "POST",
        "/admin/jobs/saga-sweeper",
        token=token_for(admin),
        time_limit_ms=int((sweeper.AFTER_LAST_TURN_S - 1) * 1000),
    )
    assert reply.status == 200, reply.body
    report = reply.json()
    assert report["expired"] == 0 and report["stopped_early"] is True, report
    assert status(overdue[0]) == "queued"


class ReleaseFails:
    """The queue port's backend with its delayed messages' release failing: the queue (or
    the Redis that parks them) is down."""

    def publish(self, queue: str, message: dict[str, Any], *, delay_s: float = 0) -> str:
        return "dropped"

    def release_due(self, queues: list[str] | None = None) -> int:
        raise ConnectionError("the queue went away")


@pytest.fixture
def release_fails() -> Iterator[None]:
    with backend_in_place(ReleaseFails()):
        yield


def test_a_failing_stage_keeps_the_other_stages_counts_and_fails_the_run(
    own_database: None, release_fails: None
) -> None:
    overdue = overdue_tasks(1)
    left_reservation_and_expired_key()

    with capture_logs() as logs, pytest.raises(SweepIncomplete) as failed:
        timer_run()

    report = failed.value.report
    assert report["failed_stages"] == {"released": "ConnectionError"}
    assert (report["expired"], report["settled"], report["keys_purged"]) == (1, 1, 1), report
    assert status(overdue[0]) == "failed"
    (stage,) = logs.where(message="sweep stage failed")
    assert (stage["level"], stage["stage"], stage["error"]) == (
        "error",
        "released",
        "ConnectionError",
    )
    # The timer's line records a failed run, with what it did.
    (run,) = logs.where(message="job failed")
    assert run["outcome"] == "failed" and run["report"] == report
    assert "the queue went away" not in logs.text

    # An admin's run is answered 503 and recorded with the same report.
    overdue_tasks(1)
    admin = new_user(role="admin")
    reply = admin_job("saga-sweeper", token_for(admin))
    assert reply.status == 503 and reply.json()["code"] == "SERVICE_UNAVAILABLE"
    (record,) = actions_on("saga-sweeper")
    assert record["changes"]["failed"] == "SERVICE_UNAVAILABLE"
    recorded = record["changes"]["report"]
    assert recorded["failed_stages"] == {"released": "ConnectionError"}
    assert recorded["expired"] == 1


def test_a_run_ends_within_the_timeout_of_each_function_that_runs_it() -> None:
    for function in ("saga-sweeper", "admin-jobs-run"):
        timeout_s = manifest.load().functions[function].timeout_s
        assert timeout_s >= sweeper.RUN_BUDGET_S + sweeper.AFTER_LAST_TURN_S, function
