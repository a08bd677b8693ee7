"""A step waiting out Retry-After is not called early by a duplicate message or the sweeper."""

from __future__ import annotations

import time

from app.pipeline import messages
from app.runner.sweeper import sweep
from tests.fakes.upstream import Answer, Call, FakeUpstream
from tests.support.pipelines import Customer, Worker, new_pipeline
from tests.support.settings import settings_env


def test_a_duplicate_message_or_the_sweeper_waits_for_retry_after(worker: Worker) -> None:
    def answer(call: Call) -> Answer:
        first = len(upstream.calls_to("/busy")) == 1
        return Answer(429, headers={"Retry-After": "3"}) if first else Answer(200, {"ok": 1})

    with FakeUpstream() as upstream:
        upstream.script("/busy", answer)
        pipeline = new_pipeline([{"id": "a", "type": "http", "url": upstream.url("/busy")}])
        user = Customer(quota=1)
        task_id = user.create(pipeline).json()["id"]
        deadline = time.monotonic() + 10
        while not upstream.calls_to("/busy"):
            assert time.monotonic() < deadline
            time.sleep(0.01)
        time.sleep(0.3)  # the worker parks the step for the re-queued message

        messages.publish_step(task_id, 0)  # a duplicate delivery
        with settings_env(PIPELINE_STALL_S="0"):
            sweep()
        task = user.wait(task_id)

        calls = upstream.calls_to("/busy")
        assert task["status"] == "succeeded", task
        assert len(calls) == 2
        assert calls[1].started - calls[0].started >= 2.9
