"""Redis down while a task's step is to call an upstream host (README "When Redis is
down"): the host's slots live in Redis and a host is never called past its cap, so the step
waits, its message failing, and runs once Redis is back and the sweeper sends it again."""

from __future__ import annotations

from app.runner import sweeper
from tests.fakes.upstream import Answer, FakeUpstream
from tests.support.pipelines import Customer, Worker, new_pipeline
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
