"""A step's first call is made with the host slot its claim took only while that slot is
still held: the claim takes it before its commit, and the commit, marking a queued task
running and presigning the call's input all come before the call. A stall there past the
slot's lease (the call's timeout + calls.SLOT_LEASE_MARGIN_S) lets another caller take the
slot, and calling with it anyway would put one call more on the host than
PIPELINE_HOST_CONCURRENCY.

The stall is real: a transaction of the test holds the task's row lock, so marking the
task running waits in MariaDB while the slot's lease runs out in Redis."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import select

from app.db.tables import tasks
from app.runner import slots
from tests.fakes.upstream import Answer, FakeUpstream
from tests.support.host_slots import (
    OtherCaller,
    given_back_since,
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
    would be: under DB_LOCK_WAIT_TIMEOUT_S's default (3 s) marking the task running would fail
    first and be tried again, which is not the stall this is about."""
    with app_engine_under(DB_LOCK_WAIT_TIMEOUT_S="30"):
        yield


@pytest.mark.slow  # the stall outlasts a slot's lease: about 6 s
def test_a_slot_lost_before_the_first_call_is_never_called_with() -> None:
    with (
        FakeUpstream() as upstream,
        settings_env(PIPELINE_HOST_CONCURRENCY="1"),
    ):
        upstream.script("/r", lambda _call: Answer(200, {"ok": True}))
        step = {"id": "s", "type": "http", "url": upstream.url("/r"), "timeout_s": TIMEOUT_S}
        user = Customer(quota=1)
        # No worker yet: the start message waits in the broker while the task is locked.
        task_id = user.create(new_pipeline([step]), {}).json()["id"]
        lock = RowLock()
        lock.take(select(tasks.c.id).where(tasks.c.id == task_id))
        other = OtherCaller(upstream)
        worker = Worker().start()
        try:
            # The step claimed with a slot; marking running waits, past the slot's lease.
            released = stalled_past_the_lease(lock, other, upstream)
            # The worker, now past the stall, found the host full and gave the claim back.
            assert wait_for(lambda: given_back_since(task_id, -1, released))
            calls_while_full = len(upstream.calls_to("/r"))
            other.end()
            task = user.wait(task_id)
            worker.wait_idle()
        finally:
            worker.stop()

    assert upstream.max_in_flight == 1  # never two calls on the host's one slot
    assert calls_while_full == 0
    assert task["status"] == "succeeded", task
    assert len(upstream.calls_to("/r")) == 1
    assert upstream.calls_to("/r")[0].started >= upstream.calls_to("/other")[0].ended
    assert slots.in_use(other.host) == 0


@pytest.mark.slow  # the stall outlasts calls.SLOT_REUSE_S, so the slot is asked of Redis
def test_a_first_call_whose_slot_redis_cannot_check_is_not_counted() -> None:
    """Redis goes away between the claim (its first call counted) and the call: the slot
    cannot be looked at again, so the call is not made, and the claim is given back with
    it not counted. Counted still, a step of `retries: 0` would fail once Redis is back
    without its upstream ever being called."""
    with FakeUpstream() as upstream:
        upstream.script("/r", lambda _call: Answer(200, {"ok": True}))
        step = {"id": "s", "type": "http", "url": upstream.url("/r"), "retries": 0}
        user = Customer(quota=1)
        # No worker yet: the start message waits in the broker while the task is locked.
        task_id = user.create(new_pipeline([step]), {}).json()["id"]
        lock = RowLock()
        lock.take(select(tasks.c.id).where(tasks.c.id == task_id))
        worker = Worker().start()
        try:
            redis_gone_while_stalled(lock, worker)  # marking the task running waits
            task = user.wait(task_id)
        finally:
            worker.stop()

    assert task["status"] == "succeeded", task
    assert [c.path for c in upstream.calls] == ["/r"]
