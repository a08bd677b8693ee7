"""A step's result is recorded though its row stays locked past one DB_LOCK_WAIT_TIMEOUT_S
(a cancel or the sweeper's end of the task holding it, each behind the user's quota row):
the settle is tried again in the invocation, as a fork branch's is, rather than failing
the message, whose redelivery would call the upstream once more after the lease."""

from __future__ import annotations

import threading
from typing import Any

from sqlalchemy import select

from app.db.tables import task_steps
from tests.fakes.upstream import Answer, FakeUpstream
from tests.support.lock_waits import held_past_one_wait
from tests.support.pipelines import Customer, Worker, new_pipeline
from tests.support.settings import app_engine_under


def test_a_result_whose_row_is_held_past_one_lock_wait_is_recorded_once() -> None:
    called, answer = threading.Event(), threading.Event()

    def upstream_call(_call: Any) -> Answer:
        called.set()
        answer.wait(10)
        return Answer(200, {"ok": True})

    with FakeUpstream() as upstream, app_engine_under(DB_LOCK_WAIT_TIMEOUT_S="1"):
        upstream.script("/r", upstream_call)
        step = {"id": "s", "type": "http", "url": upstream.url("/r"), "timeout_s": 10}
        user = Customer(quota=1)
        worker = Worker().start()
        try:
            task_id = user.create(new_pipeline([step]), {}).json()["id"]
            assert called.wait(10), "the step was never called"
            # The answer comes, and the settle waits for the step's row past one lock wait.
            row = select(task_steps.c.id).where(task_steps.c.task_id == task_id)
            held_past_one_wait(row, answer.set)
            task = user.wait(task_id)
            worker.wait_idle()
        finally:
            worker.stop()

    assert task["status"] == "succeeded", task
    assert len(upstream.calls_to("/r")) == 1
