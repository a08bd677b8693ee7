"""Messages that meet a host with no free slot: one for a branch that is done or running is
dropped, never re-queued; one for a branch waiting for a slot keeps its row moving, so the
sweeper does not add copies of it."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from app.pipeline import messages
from app.runner.sweeper import sweep
from tests.fakes.upstream import Answer, Call, FakeUpstream
from tests.support.pipelines import QUEUE, Customer, Worker, new_pipeline
from tests.support.settings import settings_env


class Spy:
    """A second subscription of the pipeline queue: a copy of every message published."""

    def __init__(self) -> None:
        from app.queue.local import broker

        self.broker = broker()
        self.bodies: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def _consume(self, message: Any, _attempt: int) -> None:
        with self._lock:
            self.bodies.append(json.loads(message.body))

    def count(self, task_id: str, branch: int) -> int:
        with self._lock:
            return sum(
                1
                for body in self.bodies
                if body.get("task_id") == task_id and body.get("branch", -1) == branch
            )


@pytest.fixture
def spy() -> Iterator[Spy]:
    watcher = Spy()
    watcher.broker.subscribe(QUEUE, "spy", watcher._consume)
    try:
        yield watcher
    finally:
        watcher.broker.unsubscribe(QUEUE, "spy")


def _fork(url: str) -> str:
    return new_pipeline(
        [
            {
                "id": "f",
                "type": "fork",
                "for_each": "input.items",
                "step": {"type": "http", "url": url, "retries": 0},
            }
        ]
    )


def _wait_for(condition: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline
        time.sleep(0.01)


def test_messages_for_done_or_running_branches_are_dropped_with_no_slot_free(
    worker: Worker, spy: Spy
) -> None:
    gate = threading.Event()

    def answer(call: Call) -> Answer:
        if call.body["input"] == 0:
            return Answer(200, {"fast": True})
        return Answer(200, {"slow": True}) if gate.wait(10) else Answer(500)

    with (
        FakeUpstream() as upstream,
        settings_env(PIPELINE_HOST_CONCURRENCY="1", PIPELINE_MAX_CONCURRENCY="1"),
    ):
        upstream.script("/r", answer)
        user = Customer(quota=1)
        task_id = user.create(_fork(upstream.url("/r")), {"items": [0, 1]}).json()["id"]
        # branch 0 answered; branch 1 holds the host's only slot
        _wait_for(lambda: upstream.in_flight == 1 and len(upstream.calls_to("/r")) == 2)
        before = (spy.count(task_id, 0), spy.count(task_id, 1))

        messages.publish_branch(task_id, 0, 0)  # a duplicate of a settled branch
        messages.publish_branch(task_id, 0, 1)  # a duplicate of the running branch
        time.sleep(1.2)  # several slot retries' worth of time
        after = (spy.count(task_id, 0), spy.count(task_id, 1))

        gate.set()
        task = user.wait(task_id)

    assert after == (before[0] + 1, before[1] + 1)
    assert task["status"] == "succeeded"
    assert len(upstream.calls_to("/r")) == 2
    assert upstream.max_in_flight == 1


def test_branches_waiting_for_a_slot_are_not_republished_by_the_sweeper(
    worker: Worker, spy: Spy
) -> None:
    gate = threading.Event()
    with (
        FakeUpstream() as upstream,
        settings_env(PIPELINE_HOST_CONCURRENCY="1", PIPELINE_STALL_S="2"),
    ):
        upstream.script("/r", lambda _c: Answer(200, {}) if gate.wait(10) else Answer(500))
        user = Customer(quota=1)
        task_id = user.create(_fork(upstream.url("/r")), {"items": [0, 1, 2]}).json()["id"]
        _wait_for(lambda: upstream.in_flight == 1)
        # One branch holds the only slot, two wait for it: nothing is stalled. The stall is
        # 2 s, so a waiter's retry (every 0.2 to 0.4 s) may come late on a busy machine; the
        # sweeps span more than one stall, so rows left still would be found.
        reports = []
        for _ in range(3):
            time.sleep(1.1)
            reports.append(sweep()["republished"])
        step_messages = spy.count(task_id, -1)

        gate.set()
        task = user.wait(task_id)

    assert reports == [0, 0, 0]
    assert step_messages == 1  # the fork's own, from task creation
    assert task["status"] == "succeeded"
    assert len(upstream.calls_to("/r")) == 3
    assert upstream.max_in_flight == 1
