"""A step's further call (a retry made in the same invocation) is made with the host slot
taken for it only while that slot is still held: the slot is taken before the call is
counted in the step's row, and that commit may stall past the slot's lease (the call's
timeout + calls.SLOT_LEASE_MARGIN_S), when another caller may take the slot. Calling with
it anyway would put one call more on the host than PIPELINE_HOST_CONCURRENCY; instead the
step goes back to the queue with that count taken back, so it still gets 1 + retries calls.

The stall is real: a transaction of the test holds the step's row lock, so counting the
call waits in MariaDB while the slot's lease runs out in Redis."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
from sqlalchemy import select

from app.db.tables import task_steps
from app.db.transaction import transaction
from app.runner import rows, slots
from tests.fakes.upstream import Answer, Call, FakeUpstream
from tests.support.host_slots import (
    OtherCaller,
    redis_gone_while_stalled,
    stalled_past_the_lease,
)
from tests.support.local_cloud import wait_for
from tests.support.lock_waits import RowLock
from tests.support.pipelines import Customer, Worker, new_pipeline
from tests.support.settings import app_engine_under, settings_env

TIMEOUT_S = 0.5  # a slot's lease is the call's timeout + calls.SLOT_LEASE_MARGIN_S


@pytest.fixture(autouse=True)
def one_long_lock_wait() -> Iterator[None]:
    """The stall is one lock wait that outlasts the slot's lease, as a stalled commit
    would be: under DB_LOCK_WAIT_TIMEOUT_S's default (3 s) counting the call would fail
    first, which is not the stall this is about."""
    with app_engine_under(DB_LOCK_WAIT_TIMEOUT_S="30"):
        yield


def parked_since(task_id: str, since: datetime) -> bool:
    """The row waits for its re-queued message, its one made call counted and the unmade
    one not, and was touched after `since`."""
    with transaction() as tx:
        row = rows.step_row(tx, task_id, 0, -1)
    assert row is not None
    return (
        row["status"] == "running"
        and row["attempts"] == 1
        and row["heartbeat_at"] is None
        and row["updated_at"] > since
    )


def retried_while_counting_waits(upstream: FakeUpstream, lock: RowLock) -> dict[str, Any]:
    """A step of one retry whose upstream answers its first call 500 (retried) and any
    other 200, and takes `lock` on the step's row as it answers the first: counting the
    retry then waits for the lock, its host slot already taken."""
    c = task_steps.c

    def answer(call: Call) -> Answer:
        if len(upstream.calls_to("/r")) == 1:  # the first: the retry's count will wait
            row = c.task_id == call.body["task_id"]
            lock.take(select(c.id).where(row, c.position == 0, c.branch == -1))
            return Answer(500)
        return Answer(200, {"ok": True})

    upstream.script("/r", answer)
    return {
        "id": "s",
        "type": "http",
        "url": upstream.url("/r"),
        "timeout_s": TIMEOUT_S,
        "retries": 1,
    }


@pytest.mark.slow  # the stall outlasts a slot's lease: about 6 s
def test_a_slot_lost_while_a_further_call_was_counted_is_never_called_with() -> None:
    lock = RowLock()
    with (
        FakeUpstream() as upstream,
        settings_env(PIPELINE_HOST_CONCURRENCY="1"),
    ):
        step = retried_while_counting_waits(upstream, lock)
        user = Customer(quota=1)
        other = OtherCaller(upstream)
        worker = Worker().start()
        try:
            task_id = user.create(new_pipeline([step]), {}).json()["id"]
            # The first call failed; the retry's count waits, past the slot's lease.
            released = stalled_past_the_lease(lock, other, upstream)
            # The worker, now past the stall, finds the host full and parks the row (or
            # calls with the lost slot: two calls on the host's one).
            wait_for(lambda: parked_since(task_id, released) or len(upstream.calls_to("/r")) > 1)
            calls_while_full = len(upstream.calls_to("/r")) - 1
            assert upstream.max_in_flight == 1  # never two calls on the host's one slot
            assert calls_while_full == 0
            assert parked_since(task_id, released)
            other.end()
            task = user.wait(task_id)
            worker.wait_idle()
        finally:
            worker.stop()

    assert upstream.max_in_flight == 1
    assert task["status"] == "succeeded", task
    assert len(upstream.calls_to("/r")) == 2  # 1 + retries: the unmade call not counted
    assert upstream.calls_to("/r")[1].started >= upstream.calls_to("/other")[0].ended
    assert slots.in_use(other.host) == 0


@pytest.mark.slow  # the stall outlasts calls.SLOT_REUSE_S, so the slot is asked of Redis
def test_a_further_call_counted_while_redis_went_away_is_not_counted() -> None:
    """Redis goes away while a further call is counted: its slot cannot be looked at again,
    so the call is not made, and its count is taken back with the row's park. Counted
    still, it would use up the step's last call without the upstream ever being called:
    the step would fail once Redis is back instead of making it."""
    lock = RowLock()
    with FakeUpstream() as upstream:
        step = retried_while_counting_waits(upstream, lock)
        user = Customer(quota=1)
        worker = Worker().start()
        try:
            task_id = user.create(new_pipeline([step]), {}).json()["id"]
            # The first call failed; counting the retry waits while Redis goes away.
            redis_gone_while_stalled(lock, worker)
            task = user.wait(task_id)
        finally:
            worker.stop()

    assert task["status"] == "succeeded", task
    assert len(upstream.calls_to("/r")) == 2  # 1 + retries: the unmade call not counted
