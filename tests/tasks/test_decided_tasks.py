"""A task whose last step has ended is decided, though the transition that ends it (its own
commit, after the step's) has not run yet: a cancel or the sweeper's expiry in that gap
ends it as its last step says, and never refunds work whose result is in its steps."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event, update

from app.db.engine import get_engine
from app.runner.sweeper import sweep
from tests.support.pipelines import Customer, Worker, new_pipeline
from tests.support.settings import settings_env

# The worker's end of a task: its transition locks the task row (a cancel's lock names
# the user too).
FINISH_LOCK = "SELECT tasks.status, tasks.cost \nFROM tasks \nWHERE tasks.id = "


@contextmanager
def held_before_finish() -> Iterator[tuple[threading.Event, threading.Event]]:
    """Holds the worker's thread just before the transition that ends a task, after its
    last step's result committed: (reached, release)."""
    reached, release = threading.Event(), threading.Event()

    def before(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.startswith(FINISH_LOCK) and "user_id" not in statement:
            reached.set()
            release.wait(timeout=10)

    engine = get_engine()
    event.listen(engine, "before_cursor_execute", before)
    try:
        yield reached, release
    finally:
        release.set()
        event.remove(engine, "before_cursor_execute", before)


def test_a_cancel_after_the_last_steps_result_is_409_and_the_task_is_charged(
    worker: Worker,
) -> None:
    pipeline = new_pipeline([{"id": "a", "type": "sim", "duration_ms": 1}], cost=3)
    user = Customer(quota=3)

    with held_before_finish() as (reached, release):
        task_id = user.create(pipeline, {"n": 1}).json()["id"]
        assert reached.wait(timeout=10)
        cancelled = user.cancel(task_id)
        release.set()
        task = user.wait(task_id)
        worker.wait_idle()

    assert cancelled.status == 409, cancelled.json()
    assert cancelled.json()["code"] == "TASK_NOT_CANCELLABLE"
    assert task["status"] == "succeeded"
    assert task["output"] == task["steps"][-1]["output"] is not None
    assert user.quota() == (0, 0)


def test_the_sweeper_ends_an_overdue_task_whose_last_step_succeeded_as_succeeded() -> None:
    from app.clock import utcnow
    from app.db.tables import task_steps, tasks
    from app.db.transaction import transaction

    pipeline = new_pipeline([{"id": "a", "type": "sim", "duration_ms": 1}], cost=3)
    user = Customer(quota=3)
    task_id = user.create(pipeline).json()["id"]  # no worker: it stays queued
    # As a worker that died after its step's commit leaves it, long ago.
    with transaction() as conn:
        old = utcnow().replace(year=2020)
        conn.execute(
            update(task_steps)
            .where(task_steps.c.task_id == task_id)
            .values(status="succeeded", output={"done": True}, finished_at=old, updated_at=old)
        )
        conn.execute(
            update(tasks)
            .where(tasks.c.id == task_id)
            .values(status="running", created_at=old, updated_at=old)
        )

    with settings_env(TASK_MAX_RUNTIME_S="1"):
        assert sweep()["expired"] >= 1

    task = user.get(task_id).json()
    assert (task["status"], task["output"], task["error"]) == ("succeeded", {"done": True}, None)
    assert user.quota() == (0, 0)
