"""A queued task whose row stays locked past one DB_LOCK_WAIT_TIMEOUT_S when its first step
is claimed: marking it running is tried again in the invocation while that fits, so the
step runs in that delivery; when it no longer fits, the claim is given back (its call not
counted, its host slot freed) and the message fails, so the platform delivers it again.
Either way the step is called once and the task ends as it would have."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest
from sqlalchemy import select

from app.db.tables import task_steps, tasks
from app.db.transaction import transaction
from app.runner import slots
from tests.fakes.upstream import Answer, FakeUpstream
from tests.support.functions import time_limit_ms
from tests.support.local_cloud import wait_for
from tests.support.lock_waits import RowLock, wait_for_a_lock_wait
from tests.support.logs import CapturedLogs, capture_logs
from tests.support.pipelines import Customer, Worker, new_pipeline
from tests.support.quota import assert_ledger_consistent
from tests.support.settings import app_engine_under


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream() as fake, app_engine_under(DB_LOCK_WAIT_TIMEOUT_S="1"):
        # It takes a moment, as a real upstream does: a call the invocation leaves no time
        # for (app.runner.calls' budget) would be cut, and the task would fail.
        fake.script("/r", lambda _call: Answer(200, {"ok": True}, delay_s=0.5))
        yield fake


def _locked_task(upstream: FakeUpstream) -> tuple[Customer, str, RowLock]:
    """A queued task (no worker yet: its start message waits in the broker), its row held."""
    step = {"id": "s", "type": "http", "url": upstream.url("/r"), "timeout_s": 5}
    user = Customer(quota=1)
    task_id = user.create(new_pipeline([step]), {}).json()["id"]
    lock = RowLock()
    lock.take(select(tasks.c.id).where(tasks.c.id == task_id))
    return user, task_id, lock


def _calls_counted(task_id: str) -> int:
    with transaction() as tx:
        return int(
            tx.execute(
                select(task_steps.c.attempts).where(task_steps.c.task_id == task_id)
            ).scalar_one()
        )


def _ends_as_it_would_have(upstream: FakeUpstream, user: Customer, task_id: str) -> None:
    task = user.wait(task_id)
    assert task["status"] == "succeeded", task
    assert len(upstream.calls_to("/r")) == 1
    assert _calls_counted(task_id) == 1
    assert user.quota() == (0, 0)
    assert_ledger_consistent([user.id])


def _deliveries(logs: CapturedLogs, task_id: str) -> list[str]:
    """How each delivery of the task's messages ended (the broker may hold other tests')."""
    ends = ("queue message", "queue message failed")
    return [
        line["message"]
        for line in logs.lines
        if line.get("task_id") == task_id and line["message"] in ends
    ]


def _run(worker: Worker, lock: RowLock, hold: Callable[[CapturedLogs], None]) -> CapturedLogs:
    with capture_logs() as logs:
        worker.start()
        try:
            try:
                wait_for_a_lock_wait()  # the step claimed; marking the task running waits
                hold(logs)
            finally:
                lock.release()
            worker.wait_idle(timeout=20)
        finally:
            worker.stop()
    return logs


def test_a_task_row_held_past_one_lock_wait_is_waited_out_in_the_invocation(
    upstream: FakeUpstream,
) -> None:
    user, task_id, lock = _locked_task(upstream)
    worker = Worker()
    logs = _run(worker, lock, lambda _logs: time.sleep(1.5))  # past one wait (1 s)

    _ends_as_it_would_have(upstream, user, task_id)
    assert _deliveries(logs, task_id) == ["queue message"]


@pytest.mark.slow  # a lock wait, then a redelivery 2 s later
def test_a_claim_whose_task_cannot_be_marked_running_in_time_is_given_back(
    upstream: FakeUpstream,
) -> None:
    user, task_id, lock = _locked_task(upstream)
    # 1.5 s: after the first wait, short of another wait and the end's margin (2 s).
    worker = Worker(time_limit_ms=1500)
    # Delivered again only once the slot has been read and the lock let go.
    backoff, worker.broker.backoff_s = worker.broker.backoff_s, 2.0
    host = f"127.0.0.1:{upstream.port}"
    freed: list[int] = []

    def hold(logs: CapturedLogs) -> None:
        assert wait_for(lambda: logs.where(message="queue message failed"))
        freed.append(slots.in_use(host))
        # The redelivery is an invocation as the platform makes them: the function's whole
        # time limit, so its call has the room the runner keeps for calls.
        worker.context["time_limit_in_ms"] = time_limit_ms("pipeline-worker")

    try:
        logs = _run(worker, lock, hold)
    finally:
        worker.broker.backoff_s = backoff

    assert freed == [0]  # the claim's slot, given back before the message failed
    _ends_as_it_would_have(upstream, user, task_id)
    assert _deliveries(logs, task_id) == ["queue message failed", "queue message"]
