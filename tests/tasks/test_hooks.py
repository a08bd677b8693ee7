"""The task-updated hook follows each committed transition, once, and never decides it: a
push that fails is logged, the transition stands; a transition rolled back announces
nothing.

The push fails for real: the user's stream key holds a string, so Redis refuses the append
(WRONGTYPE), as it would refuse any command the push sends while it cannot take it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from app.realtime.streams import stream_key
from app.redis_client import get_redis
from tests.support.logs import CapturedLogs, capture_logs
from tests.support.pipelines import Customer, Worker, new_pipeline

QUICK = [{"id": "a", "type": "sim", "duration_ms": 1}]


@pytest.fixture
def logs() -> Iterator[CapturedLogs]:
    with capture_logs() as captured:
        yield captured


def customer_whose_pushes_fail() -> Customer:
    user = Customer(quota=1)
    get_redis().set(stream_key(user.id), "not a stream")
    return user


def announced(logs: CapturedLogs, task_id: str) -> list[str]:
    return [line["status"] for line in logs.where(message="task updated", task_id=task_id)]


def unpushed(logs: CapturedLogs, task_id: str) -> list[str]:
    lines = logs.where(message="task update not pushed", task_id=task_id)
    assert all(line["level"] == "warning" and line["error"] == "ResponseError" for line in lines)
    return [line["status"] for line in lines]


def test_a_failing_push_neither_fails_nor_undoes_a_cancel(logs: CapturedLogs) -> None:
    user = customer_whose_pushes_fail()
    task_id = user.create(new_pipeline(QUICK)).json()["id"]  # no worker: it stays queued

    reply = user.cancel(task_id)

    assert reply.status == 200 and reply.json()["status"] == "cancelled"
    assert user.get(task_id).json()["status"] == "cancelled"
    assert announced(logs, task_id) == ["queued", "cancelled"]
    assert unpushed(logs, task_id) == ["cancelled"]  # `queued` is never pushed
    assert user.quota() == (1, 0)

    again = user.cancel(task_id)  # refused and rolled back: nothing to announce
    assert again.status == 409
    assert announced(logs, task_id) == ["queued", "cancelled"]


def test_a_failing_push_neither_fails_nor_undoes_a_run(worker: Worker, logs: CapturedLogs) -> None:
    user = customer_whose_pushes_fail()

    task = user.wait(user.create(new_pipeline(QUICK)).json()["id"])
    worker.wait_idle()

    assert task["status"] == "succeeded"
    assert announced(logs, task["id"]) == ["queued", "running", "succeeded"]
    assert unpushed(logs, task["id"]) == ["running", "succeeded"]
    assert user.quota() == (0, 0)
