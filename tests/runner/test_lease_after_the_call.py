"""What follows a step's last call (its output kept in COS, up to 21 s with the adapter's
retry; the settle, which may wait out lock conflicts) runs under a lease that covers it: a
duplicate message arriving after the claim's own lease finds the row still held, rather
than taking it over and, on the step's last call, failing a step whose upstream answered.
And an answer that came after its row was taken over writes no object: the object under
the row's key is always the one its recorded result names."""

from __future__ import annotations

import json
import threading
import time
from datetime import timedelta
from itertools import count
from typing import Any

import pytest
from sqlalchemy import select, update

from app.clock import utcnow
from app.db.tables import task_steps, tasks
from app.db.transaction import transaction
from app.runner import rows
from tests.fakes.cos import FakeCos
from tests.fakes.upstream import Answer, Call, FakeUpstream
from tests.support.functions import handler
from tests.support.lock_waits import RowLock, wait_for_a_lock_wait
from tests.support.pipelines import Customer, new_pipeline
from tests.support.settings import app_engine_under

CONTEXT = {"function_name": "pipeline-worker", "request_id": "t"}
BIG = {"image": "A" * 20_000}  # past STORAGE_INLINE_MAX_BYTES: kept in COS
# Before its call, the invocation waits this long for the task's row (a cancel or an
# ending task holds it): what is left of the claim's lease after the answer is shorter.
STALL_S = 20.0
MESSAGE = {"kind": "step", "step": 0}


def step_row(task_id: str) -> Any:
    with transaction() as tx:
        return rows.step_row(tx, task_id, 0)


def one_step_task(upstream: FakeUpstream, timeout_s: float, retries: int) -> tuple[Customer, str]:
    """A task of one `http` step to the upstream's /r, queued with no worker: it waits."""
    step = {"id": "s", "type": "http", "url": upstream.url("/r"), "timeout_s": timeout_s}
    user = Customer(quota=1)
    return user, user.create(new_pipeline([{**step, "retries": retries}])).json()["id"]


def stored(cos: FakeCos, task_id: str) -> tuple[dict[str, Any], Any]:
    """The row's recorded reference and the object it names."""
    reference = step_row(task_id)["output"]
    data = cos.data(reference["key"])
    assert data is not None and len(data) == reference["size_bytes"]
    return reference, json.loads(data)


@pytest.mark.slow  # waits out a claim's lease (about 34 s) in real time
def test_a_duplicate_after_the_claims_lease_leaves_an_answer_being_stored_to_settle(
    cos_bucket: FakeCos,
) -> None:
    # The step's only call (no retries): lease_s is timeout + 3 + LEASE_MARGIN_S, 33.5 s.
    with FakeUpstream() as upstream, app_engine_under(DB_LOCK_WAIT_TIMEOUT_S="30"):
        upstream.script("/r", lambda _call: Answer(200, BIG))
        user, task_id = one_step_task(upstream, 0.5, retries=0)
        # The output's put times out (10 s) and its retry answers 8 s late: 19 s in all.
        cos_bucket.slow_next("PutObject", 11)
        cos_bucket.slow_next("PutObject", 8)
        lock = RowLock()
        lock.take(select(tasks.c.id).where(tasks.c.id == task_id))
        message, worker = {**MESSAGE, "task_id": task_id}, handler("pipeline-worker")
        first = threading.Thread(target=worker, args=(message, CONTEXT))
        first.start()
        try:
            wait_for_a_lock_wait()  # claimed; marking the task running waits for its row
            claimed_until = step_row(task_id)["lease_until"]
            time.sleep(STALL_S - 1)
        finally:
            lock.release()
        # The answer came at once, and its output is being stored: the claim's lease ends.
        while utcnow() <= claimed_until + timedelta(seconds=0.2):
            time.sleep(0.1)
        assert first.is_alive(), "the output was stored before the claim's lease ended"
        worker(message, CONTEXT)  # a duplicate (an SCF retry, a fork heal's resend)
        first.join(30)
        assert not first.is_alive()

        task = user.wait(task_id)
        assert task["status"] == "succeeded", task
        assert len(upstream.calls_to("/r")) == 1
        assert stored(cos_bucket, task_id)[1] == BIG
    assert user.quota() == (0, 0)


def test_an_answer_after_its_row_was_taken_over_writes_no_object(cos_bucket: FakeCos) -> None:
    calls = count()
    in_call, answer = threading.Event(), threading.Event()

    def upstream_call(_call: Call) -> Answer:
        if next(calls) == 0:  # the first holder's call: answered once the row was taken over
            in_call.set()
            answer.wait(10)
            return Answer(200, {"by": "late", **BIG})
        return Answer(200, {"by": "taker", **BIG})

    with FakeUpstream() as upstream:
        upstream.script("/r", upstream_call)
        # Two calls in all, so a taker calls again; a lease (46 s) the answer must renew.
        user, task_id = one_step_task(upstream, 5, retries=1)
        message, worker = {**MESSAGE, "task_id": task_id}, handler("pipeline-worker")
        first = threading.Thread(target=worker, args=(message, CONTEXT))
        first.start()
        try:
            assert in_call.wait(10), "the step was never called"
            # Its holder stalls past its lease, and a duplicate message takes the row over.
            with transaction() as tx:
                tx.execute(
                    update(task_steps)
                    .where(task_steps.c.task_id == task_id)
                    .values(lease_until=utcnow() - timedelta(seconds=1))
                )
            worker(message, CONTEXT)
            assert user.get(task_id).json()["status"] == "succeeded"
            reference, recorded = stored(cos_bucket, task_id)
            assert recorded == {"by": "taker", **BIG}
        finally:
            answer.set()
            first.join(10)

        # The late answer's settle is refused, and the object is still the recorded one.
        assert len(upstream.calls_to("/r")) == 2
        assert stored(cos_bucket, task_id) == (reference, recorded)
        assert cos_bucket.keys(f"tasks/{task_id}/") == [reference["key"]]
    assert user.quota() == (0, 0)
