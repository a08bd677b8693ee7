"""The saga sweeper finds a stalled task however many long-running live tasks there are, and
when more are stalled than one sweep takes (a worker outage), each sweep goes on from where
the last one stopped: every stalled task is published again in turn, rather than the
oldest ones every minute and the newer ones never."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import delete, insert

from app.clock import utcnow
from app.db.tables import task_steps, tasks
from app.db.transaction import transaction
from app.ids import new_id
from app.runner import sweeper
from tests.support.database import a_database_of_its_own
from tests.support.logs import capture_logs
from tests.support.pipelines import Worker
from tests.support.queue import Recorder
from tests.support.settings import redis_down, settings_env

STEPS = [{"id": "s", "type": "sim", "duration_ms": 0}]


def _task(status: str, updated: object, step_status: str, step_updated: object) -> tuple:
    now = utcnow()
    task_id = new_id()
    task = {
        "id": task_id,
        "user_id": new_id(),
        "pipeline_id": "p-sweeper",
        "status": status,
        "cost": 0,
        "input": {},
        "steps": STEPS,
        "created_at": now,
        "updated_at": updated,
    }
    step = {
        "id": new_id(),
        "task_id": task_id,
        "position": 0,
        "branch": -1,
        "step_id": "s",
        "type": "sim",
        "status": step_status,
        "attempts": 1 if step_status == "running" else 0,
        "lease_until": now + timedelta(hours=1) if step_status == "running" else None,
        "created_at": now,
        "updated_at": step_updated,
    }
    return task, step


def test_live_tasks_filling_a_batch_do_not_hide_a_stalled_one(worker: Worker) -> None:
    now = utcnow()
    # Long-running tasks: their task row is old, but a step moved a moment ago.
    live = [
        _task("running", now - timedelta(hours=1), "running", now) for _ in range(sweeper.BATCH)
    ]
    stalled_task, stalled_step = _task(
        "queued", now - timedelta(minutes=10), "pending", now - timedelta(minutes=10)
    )
    ids = [t["id"] for t, _ in live] + [stalled_task["id"]]
    with transaction() as conn:
        conn.execute(insert(tasks), [t for t, _ in live] + [stalled_task])
        conn.execute(insert(task_steps), [s for _, s in live] + [stalled_step])
    try:
        with settings_env(PIPELINE_STALL_S="60"):
            report = sweeper.sweep()
        assert report["republished"] >= 1, report
        worker.wait_idle()
        with transaction() as conn:
            status = conn.execute(
                tasks.select()
                .with_only_columns(tasks.c.status)
                .where(tasks.c.id == stalled_task["id"])
            ).scalar_one()
        assert status == "succeeded"
    finally:
        with transaction() as conn:
            conn.execute(delete(task_steps).where(task_steps.c.task_id.in_(ids)))
            conn.execute(delete(tasks).where(tasks.c.id.in_(ids)))


def _in_a_long_call(lease_left: timedelta) -> str:
    """A running task whose step a worker claimed 10 minutes ago and is still calling (an
    upstream call may take up to 240 s, and a step's retries more): neither row has moved
    since, and the claim's lease ends `lease_left` from now."""
    now = utcnow()
    task, step = _task(
        "running", now - timedelta(minutes=10), "running", now - timedelta(minutes=10)
    )
    step.update(lease_until=now + lease_left, heartbeat_at=now - timedelta(minutes=10))
    with transaction() as conn:
        conn.execute(insert(tasks), [task])
        conn.execute(insert(task_steps), [step])
    return str(task["id"])


def _sent_for(queue: Recorder, task_id: str) -> list[dict[str, object]]:
    return [message for message in queue.sent if message.get("task_id") == task_id]


def test_a_step_whose_worker_still_holds_its_lease_is_not_published_again(
    queue: Recorder,
) -> None:
    """Its worker is in the call: a message for the step would find the row claimed and do
    nothing, so the sweeper sends none and counts none (TasksStalled counts them); once
    the lease has ended with no settle, the worker is gone and the step is sent again."""
    held = _in_a_long_call(timedelta(minutes=5))
    ended = _in_a_long_call(-timedelta(seconds=1))
    ids = [held, ended]
    try:
        with settings_env(PIPELINE_STALL_S="60"):
            sweeper.sweep()
        assert _sent_for(queue, held) == []
        assert len(_sent_for(queue, ended)) == 1
    finally:
        with transaction() as conn:
            conn.execute(delete(task_steps).where(task_steps.c.task_id.in_(ids)))
            conn.execute(delete(tasks).where(tasks.c.id.in_(ids)))


STALLED = 10
BATCH = 4  # fewer than STALLED: one sweep cannot take them all
SWEEPS = 3  # 12 turns, room for every one of the 10


@pytest.fixture
def own_database(clean_redis: Any) -> Iterator[None]:
    """A database of the test's own, so that the stalled tasks are exactly the test's."""
    with a_database_of_its_own("rotation"):
        yield


def stalled_tasks(count: int) -> list[str]:
    """`count` queued tasks whose pending first step never ran, idle past PIPELINE_STALL_S
    (created a moment ago: not past TASK_MAX_RUNTIME_S), the least recently moved first."""
    now = utcnow()
    made = [
        _task("queued", idle, "pending", idle)
        for idle in (now - timedelta(minutes=10, seconds=count - i) for i in range(count))
    ]
    with transaction() as conn:
        conn.execute(insert(tasks), [t for t, _ in made])
        conn.execute(insert(task_steps), [s for _, s in made])
    return [t["id"] for t, _ in made]


def sweeps(count: int) -> None:
    with settings_env(PIPELINE_STALL_S="60"):
        for _ in range(count):
            assert sweeper.sweep()["republished"] == BATCH


def republished(queue: Recorder) -> Counter[str]:
    return Counter(str(message["task_id"]) for message in queue.sent)


def test_every_stalled_task_gets_its_turn_when_one_sweep_cannot_take_them_all(
    own_database: None, queue: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sweeper, "BATCH", BATCH)
    ids = stalled_tasks(STALLED)

    sweeps(SWEEPS)

    counts = republished(queue)
    never = [task_id for task_id in ids if not counts[task_id]]
    assert never == [], f"{len(never)} never published again; counts: {sorted(counts.values())}"
    assert max(counts.values()) - min(counts.values()) <= 1, counts


def test_without_redis_a_sweep_starts_from_the_oldest_as_before(
    own_database: None, queue: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where the last sweep stopped is kept in Redis: without it, a sweep takes the oldest
    stalled tasks, and still does its work."""
    monkeypatch.setattr(sweeper, "BATCH", BATCH)
    ids = stalled_tasks(STALLED)

    with redis_down(), capture_logs() as logs:
        sweeps(2)

    assert republished(queue) == Counter(dict.fromkeys(ids[:BATCH], 2))
    lines = logs.where(message="sweep place unavailable", stage="republish")
    assert [(line["operation"], line["error"]) for line in lines] == [
        ("read", "ConnectionError"),
        ("write", "ConnectionError"),
    ] * 2
