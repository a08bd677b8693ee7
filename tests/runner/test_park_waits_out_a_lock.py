"""A step parked for its re-queued message (a Retry-After longer than the worker waits
inline) is parked though its row stays locked past one DB_LOCK_WAIT_TIMEOUT_S: the park is
tried again in the invocation, as a settle is, rather than failing the message, whose
redelivery would find the row held by the claim's lease (minutes) instead of the
Retry-After."""

from __future__ import annotations

import threading
from typing import Any

from sqlalchemy import select

from app.db.tables import task_steps
from app.db.transaction import transaction
from tests.fakes.upstream import Answer, FakeUpstream
from tests.support.local_cloud import wait_for
from tests.support.lock_waits import held_past_one_wait
from tests.support.logs import capture_logs
from tests.support.pipelines import Customer, Worker, new_pipeline
from tests.support.settings import app_engine_under

ENDS = ("queue message", "queue message failed")


def calls_counted(task_id: str) -> int:
    with transaction() as tx:
        query = select(task_steps.c.attempts).where(task_steps.c.task_id == task_id)
        return int(tx.execute(query).scalar_one())


def test_a_park_whose_row_is_held_past_one_lock_wait_is_made_in_the_invocation(
    worker: Worker,
) -> None:
    called, answer = threading.Event(), threading.Event()

    def upstream_call(_call: Any) -> Answer:
        if called.is_set():
            return Answer(200, {"ok": True})
        called.set()
        answer.wait(10)
        # Longer than the worker waits inline (calls.INLINE_WAIT_MAX_S): the step is parked.
        return Answer(429, headers={"Retry-After": "3"})

    with FakeUpstream() as upstream, app_engine_under(DB_LOCK_WAIT_TIMEOUT_S="1"):
        upstream.script("/r", upstream_call)
        step = {"id": "s", "type": "http", "url": upstream.url("/r"), "timeout_s": 5}
        user = Customer(quota=1)
        with capture_logs() as logs:
            task_id = user.create(new_pipeline([step]), {}).json()["id"]
            assert called.wait(10), "the step was never called"
            # The 429 comes, and the park waits for the step's row past one lock wait.
            row = select(task_steps.c.id).where(task_steps.c.task_id == task_id)
            held_past_one_wait(row, answer.set)

            def deliveries() -> list[str]:
                return [
                    line["message"]
                    for line in logs.lines
                    if line.get("task_id") == task_id and line["message"] in ENDS
                ]

            # Parked in its first delivery: the message did not fail.
            assert wait_for(deliveries) == ["queue message"]
        task = user.wait(task_id)
        worker.wait_idle()

    assert task["status"] == "succeeded", task
    assert len(upstream.calls_to("/r")) == 2
    assert calls_counted(task_id) == 2
    assert user.quota() == (0, 0)
