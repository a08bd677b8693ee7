"""A fork branch's successor run in the same invocation (chained): the host slot it is
handed is checked after the claim commits, so a commit that stalled past the slot's lease
never lets it call over PIPELINE_HOST_CONCURRENCY; and a call is counted only when it is
made, so a step that keeps failing is called exactly 1 + retries times however it ran.

The stall is real: a second transaction holds the successor's row lock, so the settling
branch's settle-and-claim statement waits in MariaDB while its slot's lease (the call's
timeout + calls.SLOT_LEASE_MARGIN_S) runs out in Redis and another caller takes the slot."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from sqlalchemy import select

from app.clock import utcnow
from app.db.tables import task_steps
from app.runner import slots
from tests.fakes.upstream import Answer, Call, FakeUpstream
from tests.support.host_slots import OtherCaller, given_back_since
from tests.support.local_cloud import wait_for
from tests.support.lock_waits import RowLock, wait_for_a_lock_wait
from tests.support.pipelines import Customer, Worker, new_pipeline
from tests.support.settings import app_engine_under, settings_env

# A slot's lease is the call's timeout + calls.SLOT_LEASE_MARGIN_S: a short timeout keeps
# the stalls short.
TIMEOUT_S = 0.5


@pytest.fixture(autouse=True)
def one_long_lock_wait() -> Iterator[None]:
    """The stall is one lock wait that outlasts the slot's lease, as a stalled commit
    would be: under DB_LOCK_WAIT_TIMEOUT_S's default (3 s) the settle would fail
    first and be tried again, which is not the stall this is about."""
    with app_engine_under(DB_LOCK_WAIT_TIMEOUT_S="30"):
        yield


def _fork(url: str, retries: int) -> str:
    step = {"type": "http", "url": url, "timeout_s": TIMEOUT_S, "retries": retries}
    return new_pipeline([{"id": "f", "type": "fork", "for_each": "input.items", "step": step}])


def stalled_handover(upstream: FakeUpstream, then: Callable[[Call], Answer]) -> RowLock:
    """Scripts `/r`: branch 0 answers once branch 1's row is locked, so its settle, which
    claims branch 1 and hands it branch 0's slot, waits for that lock (see `stall`);
    branch 1 answers with `then`."""
    lock = RowLock()
    c = task_steps.c

    def answer(call: Call) -> Answer:
        if call.body["branch"] == 0:
            task_id = call.body["task_id"]
            lock.take(select(c.id).where(c.task_id == task_id, c.position == 0, c.branch == 1))
            return Answer(200, {"first": True})
        return then(call)

    upstream.script("/r", answer)
    return lock


def stall(upstream: FakeUpstream, lock: RowLock, other: OtherCaller, task_id: str) -> None:
    """Keep the settle waiting until the slot it hands on has run out of lease and `other`
    took the host's only slot and has a call in flight; then let it commit, and wait for
    the claimed successor to find the host full and go back to the queue."""
    try:
        wait_for_a_lock_wait()  # branch 0 answered; its settle waits
        assert len(upstream.calls_to("/r")) == 1
        assert wait_for(lambda: slots.in_use(other.host) == 0)  # the handed-on lease ran out
        other.start()
        assert wait_for(lambda: upstream.in_flight == 1)
    finally:
        released = utcnow()
        lock.release()
    assert wait_for(lambda: given_back_since(task_id, 1, released))


@pytest.mark.slow  # the stall outlasts a slot's lease: about 6 s
def test_a_slot_lost_while_the_handover_stalled_is_never_called_with(worker: Worker) -> None:
    with (
        FakeUpstream() as upstream,
        settings_env(PIPELINE_HOST_CONCURRENCY="1", PIPELINE_MAX_CONCURRENCY="1"),
    ):
        lock = stalled_handover(upstream, lambda _c: Answer(200, {"second": True}))
        other = OtherCaller(upstream)
        user = Customer(quota=1)
        task_id = user.create(_fork(upstream.url("/r"), retries=2), {"items": [0, 1]}).json()["id"]

        stall(upstream, lock, other, task_id)
        calls_while_full = len(upstream.calls_to("/r"))
        other.end()
        task = user.wait(task_id)
        worker.wait_idle()

    assert upstream.max_in_flight == 1  # never two calls on the host's one slot
    assert calls_while_full == 1
    assert task["status"] == "succeeded", task
    assert len(upstream.calls_to("/r")) == 2
    second = upstream.calls_to("/r")[1]
    assert second.started >= upstream.calls_to("/other")[0].ended
    assert slots.in_use(other.host) == 0


def _busy(_call: Call) -> Answer:
    return Answer(503, {"error": "busy"})


@pytest.mark.parametrize(
    "waits_for_a_slot",
    [False, pytest.param(True, marks=pytest.mark.slow)],
    ids=["slot-handed-on", "waits-for-a-slot"],
)
def test_a_chained_successor_that_keeps_failing_is_called_exactly_one_plus_retries_times(
    worker: Worker, waits_for_a_slot: bool
) -> None:
    with (
        FakeUpstream() as upstream,
        settings_env(PIPELINE_HOST_CONCURRENCY="1", PIPELINE_MAX_CONCURRENCY="1"),
    ):
        if waits_for_a_slot:
            other = OtherCaller(upstream)
            lock = stalled_handover(upstream, _busy)
        else:
            upstream.script("/r", lambda c: _busy(c) if c.body["branch"] else Answer(200, {}))
        user = Customer(quota=1)
        task_id = user.create(_fork(upstream.url("/r"), retries=2), {"items": [0, 1]}).json()["id"]
        if waits_for_a_slot:
            stall(upstream, lock, other, task_id)
            other.end()
        task = user.wait(task_id)
        worker.wait_idle()

    successor_calls = [c for c in upstream.calls_to("/r") if c.body["branch"] == 1]
    branch = task["steps"][0]["branches"][1]
    assert len(successor_calls) == 3  # 1 + retries
    assert branch["status"] == "failed"
    assert "answered 503 (called 3 times)" in branch["error"]["message"], branch
    assert upstream.max_in_flight == 1
    if not waits_for_a_slot:
        # the fork's message and branch 0's: branch 1 ran in branch 0's invocation
        assert worker.deliveries == 2
