"""A claim whose task stays locked, while it is marked running, past the claim's lease (its
row held by a cancel, an ending task): each further try of marking it running is made only
once the claim's lease was renewed, so a duplicate message meanwhile finds the row held
rather than taking it over, finding its one call counted and never made, and failing the
step while the first holder calls the upstream after all."""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from app.clock import utcnow
from app.db.tables import tasks
from app.db.transaction import transaction
from app.runner import rows
from tests.fakes.upstream import Answer, FakeUpstream
from tests.support.functions import handler
from tests.support.lock_waits import RowLock, wait_for_a_lock_wait
from tests.support.pipelines import Customer, new_pipeline
from tests.support.settings import app_engine_under

CONTEXT = {"function_name": "pipeline-worker", "request_id": "t"}


def step_row(task_id: str) -> Any:
    with transaction() as tx:
        return rows.step_row(tx, task_id, 0)


@pytest.mark.slow  # waits out a claim's lease (33.5 s) in real time
def test_a_duplicate_while_the_task_waits_to_be_marked_running_leaves_the_claim_be() -> None:
    with FakeUpstream() as upstream, app_engine_under(DB_LOCK_WAIT_TIMEOUT_S="10"):
        upstream.script("/r", lambda _call: Answer(200, {"ok": True}))
        # The step's only call (no retries): lease_s is timeout + 3 + LEASE_MARGIN_S, 33.5 s.
        step = {"id": "s", "type": "http", "url": upstream.url("/r"), "timeout_s": 0.5}
        user = Customer(quota=1)
        task_id = user.create(new_pipeline([{**step, "retries": 0}])).json()["id"]
        lock = RowLock()
        lock.take(select(tasks.c.id).where(tasks.c.id == task_id))
        message = {"kind": "step", "step": 0, "task_id": task_id}
        worker = handler("pipeline-worker")
        first = threading.Thread(target=worker, args=(message, CONTEXT))
        first.start()
        duplicate = threading.Thread(target=worker, args=(message, CONTEXT))
        try:
            wait_for_a_lock_wait()  # claimed; marking the task running waits for its row
            claimed_until = step_row(task_id)["lease_until"]
            while utcnow() <= claimed_until + timedelta(seconds=0.5):
                time.sleep(0.1)
            # A duplicate (an SCF retry, the sweeper's re-publish) once the claim's lease ended.
            duplicate.start()
            time.sleep(2)  # it claims, or leaves the row to its holder
        finally:
            lock.release()
        first.join(30)
        duplicate.join(30)
        assert not first.is_alive() and not duplicate.is_alive()

        task = user.wait(task_id)
        assert task["status"] == "succeeded", task
        assert len(upstream.calls_to("/r")) == 1
        assert step_row(task_id)["attempts"] == 1
    assert user.quota() == (0, 0)
