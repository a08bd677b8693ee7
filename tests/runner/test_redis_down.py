"""Redis down while a task's step is to call an upstream host (README "When Redis is
down"): the host's slots live in Redis and a host is never called past its cap, so the step
waits, its message failing, and runs once Redis is back and the sweeper sends it again."""

from __future__ import annotations

import threading
import time

from app.runner import calls, sweeper
from tests.fakes.upstream import Answer, FakeUpstream
from tests.support.pipelines import Customer, Worker, new_fork, new_pipeline
from tests.support.settings import redis_down, settings_env


def test_a_step_that_calls_a_host_waits_for_redis_and_runs_once_it_is_back(
    worker: Worker,
) -> None:
    user = Customer(quota=1)
    with FakeUpstream() as upstream:
        upstream.script("/r", lambda _call: Answer(200, {"ok": True}))
        pipeline = new_pipeline([{"id": "s", "type": "http", "url": upstream.url("/r")}])
        with redis_down():
            task_id = user.create(pipeline, {}).json()["id"]
            worker.wait_idle()  # every delivery of its message failed
            assert user.get(task_id).json()["status"] == "queued"
        assert upstream.calls_to("/r") == []
        assert user.quota() == (0, 1)
        with settings_env(PIPELINE_STALL_S="0"):
            assert sweeper.sweep()["republished"] >= 1  # other tests' stalled tasks too
        assert user.wait(task_id)["status"] == "succeeded"
        assert len(upstream.calls_to("/r")) == 1
    assert user.quota() == (0, 0)


def test_an_answer_got_before_redis_went_down_is_kept(worker: Worker) -> None:
    """Redis goes away while the step's last call is in flight: the call's host slot cannot
    be given back, and runs out with its lease instead; the answer the call got is the
    step's output, not a failed step that was never to be called again."""
    user = Customer(quota=1)
    gate = threading.Event()
    with FakeUpstream() as upstream:
        upstream.script("/r", lambda _call: Answer(200, {"ok": gate.wait(10)}))
        step = {"id": "s", "type": "http", "url": upstream.url("/r"), "retries": 0}
        task_id = user.create(new_pipeline([step]), {}).json()["id"]
        while upstream.in_flight < 1:
            time.sleep(0.01)
        with redis_down():
            gate.set()
            worker.wait_idle()
            task = user.get(task_id).json()
        assert task["status"] == "succeeded", task
        assert task["output"] == {"ok": True}
        assert len(upstream.calls_to("/r")) == 1
    assert user.quota() == (0, 0)


def test_a_branch_answer_got_before_redis_went_down_is_kept() -> None:
    """As above for a fork's branch: its settle, which would hand its slot on to the next
    branch, finds no slot to be had and records the answer alone; the next branch waits for
    Redis, and runs once the sweeper sends it again."""
    user = Customer(quota=1)
    gate = threading.Event()
    with settings_env(PIPELINE_MAX_CONCURRENCY="1"), FakeUpstream() as upstream:
        worker = Worker().start()
        try:
            # Past SLOT_REUSE_S, so the handover asks Redis to renew the slot.
            upstream.script(
                "/r", lambda c: Answer(200, {"i": c.body["input"], "ok": gate.wait(10)})
            )
            task_id = user.create(new_fork(upstream.url("/r")), {"items": [0, 1]}).json()["id"]
            while upstream.in_flight < 1:
                time.sleep(0.01)
            time.sleep(calls.SLOT_REUSE_S + 0.1)
            with redis_down():
                gate.set()
                worker.wait_idle()
                branches = user.get(task_id).json()["steps"][0]["branches"]
                assert branches[0]["status"] == "succeeded", branches
            with settings_env(PIPELINE_STALL_S="0"):
                sweeper.sweep()
            task = user.wait(task_id, timeout=10)
        finally:
            worker.stop()
        assert task["status"] == "succeeded", task
        assert sorted(c.body["branch"] for c in upstream.calls_to("/r")) == [0, 1]
    assert user.quota() == (0, 0)
