"""The `scf` queue backend against a Tencent Cloud API endpoint that checks TC3 signatures:
a message is a signed asynchronous `Invoke` of the function named by the queue, with the
message as its event; delayed ones wait in Redis; and a 100-branch fork runs end to end with
every one of the runner's messages going through the fake's `Invoke` to the pipeline worker,
as SCF would deliver them."""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from app.queue import scf
from app.queue.limits import MAX_EVENT_BYTES
from tests.fakes.tencentcloud import Call, FakeTencentCloud
from tests.fakes.upstream import Answer, FakeUpstream
from tests.support.functions import handler
from tests.support.logs import capture_logs
from tests.support.pipelines import Customer, new_fork
from tests.support.redis_watch import commands_sent
from tests.support.settings import settings_env

WORKER = "ai-platform-test-pipeline-worker"


def test_publish_is_a_signed_asynchronous_invoke_of_the_queues_function(
    cloud: FakeTencentCloud,
) -> None:
    message = {"kind": "step", "task_id": "t1", "step": 0}
    assert scf.ScfBackend().publish(WORKER, message).startswith("req-")
    (call,) = cloud.calls_of("Invoke")
    assert call.service == "scf" and call.version == "2018-04-16"
    assert call.params["FunctionName"] == WORKER
    assert call.params["InvocationType"] == "Event"
    assert call.params["Namespace"] == "prod"
    assert json.loads(call.params["ClientContext"]) == message
    assert cloud.refused == []


def test_a_delayed_message_waits_in_redis_until_due(cloud: FakeTencentCloud) -> None:
    backend = scf.ScfBackend()
    # A delay long enough that a loaded machine reaches the first release before it is due.
    due = time.monotonic() + 2
    backend.publish(WORKER, {"n": 1}, delay_s=2)
    backend.publish(WORKER, {"n": 2}, delay_s=60)
    assert backend.release_due() == 0  # nothing due yet
    assert cloud.calls_of("Invoke") == []
    time.sleep(max(0.0, due - time.monotonic()) + 0.1)
    assert backend.release_due() == 1
    (call,) = cloud.calls_of("Invoke")
    assert json.loads(call.params["ClientContext"]) == {"n": 1}
    assert backend.release_due() == 0  # released once only


def test_a_failed_release_puts_the_message_back(cloud: FakeTencentCloud) -> None:
    backend = scf.ScfBackend()
    backend.publish(WORKER, {"n": 1}, delay_s=0.01)
    time.sleep(0.02)
    cloud.state["refuse"] = ["InternalError"]  # type: ignore[attr-defined]
    with pytest.raises(scf.PublishFailed):
        backend.release_due()
    assert backend.release_due() == 1


def test_a_release_looks_at_the_queues_named_for_delays_and_scans_nothing(
    cloud: FakeTencentCloud, clean_redis: Any
) -> None:
    # Every worker invocation releases: a SCAN for the sets would walk every key there is.
    backend = scf.ScfBackend()
    backend.publish(WORKER, {"n": 1}, delay_s=0.01)
    time.sleep(0.02)
    with commands_sent(clean_redis) as seen:
        assert backend.release_due() == 1
    assert seen[0] == f"SMEMBERS {scf.DELAYED_QUEUES}"
    assert not [command for command in seen if command.startswith("SCAN")]
    assert backend.release_due() == 0


def test_a_release_sends_at_most_its_bound_and_the_next_one_the_rest(
    cloud: FakeTencentCloud,
) -> None:
    # A release runs in what is left of a worker's invocation: a backlog goes out over several.
    backend = scf.ScfBackend()
    for n in range(5):
        backend.publish(WORKER, {"n": n}, delay_s=0.01)
    time.sleep(0.02)
    assert backend.release_due(at_most=3) == 3
    assert backend.release_due(at_most=3) == 2
    sent = sorted(
        json.loads(call.params["ClientContext"])["n"] for call in cloud.calls_of("Invoke")
    )
    assert sent == [0, 1, 2, 3, 4]


def test_the_invoke_rate_limit_is_waited_out_twice_then_raised(cloud: FakeTencentCloud) -> None:
    from app.observability.metrics import QUEUE_PUBLISHES

    before = QUEUE_PUBLISHES.value(queue=WORKER, outcome="rate_limited")
    cloud.state["refuse"] = ["RequestLimitExceeded", "RequestLimitExceeded"]  # type: ignore[attr-defined]
    assert scf.ScfBackend().publish(WORKER, {"n": 1}).startswith("req-")
    assert QUEUE_PUBLISHES.value(queue=WORKER, outcome="rate_limited") == before + 2
    cloud.state["refuse"] = ["RequestLimitExceeded"] * 3  # type: ignore[attr-defined]
    with pytest.raises(scf.PublishFailed, match="RequestLimitExceeded"):
        scf.ScfBackend().publish(WORKER, {"n": 2})


def test_an_event_over_128_kb_is_refused_before_any_call(cloud: FakeTencentCloud) -> None:
    with pytest.raises(scf.PublishFailed, match="131072"):
        scf.ScfBackend().publish(WORKER, {"pad": "x" * MAX_EVENT_BYTES})
    assert cloud.calls_of("Invoke") == []


def test_a_delayed_event_over_128_kb_is_refused_before_it_is_parked_and_holds_back_nothing(
    cloud: FakeTencentCloud,
) -> None:
    backend = scf.ScfBackend()
    with pytest.raises(scf.PublishFailed, match="131072"):
        backend.publish(WORKER, {"pad": "x" * MAX_EVENT_BYTES}, delay_s=0.01)
    backend.publish(WORKER, {"n": 1}, delay_s=0.02)
    time.sleep(0.03)
    assert backend.release_due() == 1
    (call,) = cloud.calls_of("Invoke")
    assert json.loads(call.params["ClientContext"]) == {"n": 1}


def test_a_refused_invoke_and_a_wrong_secret_raise_publish_failed(
    cloud: FakeTencentCloud,
) -> None:
    with pytest.raises(scf.PublishFailed, match="ResourceNotFound"):
        scf.ScfBackend().publish("missing", {"x": 1})
    with settings_env(TENCENTCLOUD_SECRET_KEY="not-the-key"), pytest.raises(scf.PublishFailed):
        scf.ScfBackend().publish(WORKER, {"x": 1})
    assert cloud.refused


def test_the_run_roles_temporary_keys_sign_with_their_session_token(
    cloud: FakeTencentCloud,
) -> None:
    # SCF injects a run role's keys under these names; explicit keys are absent then.
    role = {
        "TENCENTCLOUD_SECRET_ID": None,
        "TENCENTCLOUD_SECRET_KEY": None,
        "TENCENTCLOUD_SECRETID": cloud.secret_id,
        "TENCENTCLOUD_SECRETKEY": cloud.secret_key,
        "TENCENTCLOUD_SESSIONTOKEN": "role-session-token",
    }
    with settings_env(**role):
        assert scf.ScfBackend().publish(WORKER, {"x": 1}).startswith("req-")
    (call,) = cloud.calls_of("Invoke")
    assert call.headers.get("X-TC-Token") == "role-session-token"


def test_a_queue_function_releases_due_messages_after_its_message(
    cloud: FakeTencentCloud,
) -> None:
    import app.queue as port
    from app.events.queue import queue_handler

    port._backend = None
    try:
        port.publish(WORKER, {"n": 1}, delay_s=0.01)
        time.sleep(0.02)
        seen: list[dict[str, Any]] = []
        assert queue_handler(seen.append)({"n": 0}, {}) == {"handled": 1, "released": 1}
        assert seen == [{"n": 0}]
        assert len(cloud.calls_of("Invoke")) == 1
        assert type(port.backend()).__name__ == "ScfBackend"
    finally:
        port._backend = None


def test_a_workers_task_id_names_its_message_and_not_the_release_after_it(
    cloud: FakeTencentCloud,
) -> None:
    """The pipeline worker binds its message's task id; the release of delayed messages in
    the same invocation, which fails here, is no task's."""
    import app.queue as port

    port._backend = None
    try:
        port.publish(WORKER, {"n": 1}, delay_s=0.01)
        time.sleep(0.02)
        cloud.state["refuse"] = ["InternalError"]  # type: ignore[attr-defined]
        message = {"kind": "step", "task_id": "no-such-task", "step": 0}
        with capture_logs() as logs:
            answer = handler("pipeline-worker")(message, {"function_name": WORKER})
        assert answer == {"handled": 1, "released": 0}
        (handled,) = logs.where(message="queue message")
        assert handled["task_id"] == "no-such-task"
        (release,) = logs.where(message="releasing delayed messages failed")
        assert "task_id" not in release, release
    finally:
        port._backend = None


class AsyncInvocations:
    """What SCF does with an `Invoke` of `InvocationType=Event`: runs the function later, on
    an instance of its own, with the ClientContext as its event, and again (up to
    `retries` times) when it raises."""

    def __init__(self, worker: Any, retries: int = 2, concurrency: int = 16) -> None:
        self.worker = worker
        self.retries = retries
        self.pool = ThreadPoolExecutor(concurrency)
        self.pending = 0
        self.failed: list[BaseException] = []
        self._idle = threading.Condition()

    def __call__(self, params: dict[str, Any], call: Call) -> dict[str, Any]:
        assert params["InvocationType"] == "Event"
        assert len(params["ClientContext"].encode()) <= MAX_EVENT_BYTES
        with self._idle:
            self.pending += 1
        self.pool.submit(self._run, json.loads(params["ClientContext"]))
        return {"Result": {"FunctionRequestId": "async"}}

    def _run(self, event: dict[str, Any]) -> None:
        try:
            for attempt in range(1 + self.retries):
                try:
                    self.worker(event, {"function_name": WORKER, "request_id": "r"})
                    return
                except Exception as error:
                    if attempt == self.retries:
                        self.failed.append(error)
        finally:
            with self._idle:
                self.pending -= 1
                self._idle.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        with self._idle:
            return self._idle.wait_for(lambda: self.pending == 0, timeout)


def test_a_100_branch_fork_runs_end_to_end_through_invoke(cloud: FakeTencentCloud) -> None:
    invocations = AsyncInvocations(handler("pipeline-worker"))
    cloud.on("Invoke", invocations)
    import app.queue as port

    port._backend = None
    try:
        with (
            FakeUpstream() as upstream,
            settings_env(PIPELINE_QUEUE=WORKER, PIPELINE_MAX_CONCURRENCY="5"),
        ):
            upstream.script("/render", lambda c: Answer(200, {"r": c.body["input"]}, delay_s=0.01))
            pipeline = new_fork(upstream.url("/render"), cost=2)
            user = Customer(quota=2)
            items = [f"p{i}" for i in range(100)]
            task_id = user.create(pipeline, {"items": items}).json()["id"]
            task = user.wait(task_id, timeout=60)
            assert invocations.wait_idle(30)
    finally:
        port._backend = None
        invocations.pool.shutdown(wait=True)

    assert task["status"] == "succeeded", task
    assert [r["value"] for r in task["steps"][0]["output"]] == [{"r": item} for item in items]
    assert user.quota() == (0, 0)
    assert upstream.max_in_flight_to("/render") <= 5
    assert len(upstream.calls_to("/render")) == 100
    invokes = cloud.calls_of("Invoke")
    # The start, the fork's first window, and what a settle did not run itself.
    assert 1 + 5 <= len(invokes) < 100
    assert all(json.loads(c.params["ClientContext"])["task_id"] == task_id for c in invokes)
    assert invocations.failed == []
    assert cloud.refused == []
