"""Fan-out against a fake upstream that records in-flight calls: the fork window, the
global host cap, allSettled, min_success and the retry rules of `http` steps."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.fakes.upstream import Answer, Call, FakeUpstream
from tests.support.pipelines import Customer, Worker, new_pipeline
from tests.support.settings import settings_env


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream() as fake:
        yield fake


def fork_of(url: str, **extra: Any) -> list[dict[str, Any]]:
    return [
        {
            "id": "render",
            "type": "fork",
            "for_each": "input.prompts",
            "step": {"type": "http", "url": url, "timeout_s": 5},
            **extra,
        }
    ]


def calls_counted(outcome: str) -> float:
    from app.observability.metrics import PIPELINE_CALLS

    return PIPELINE_CALLS.value(outcome=outcome)


def slow(call: Call) -> Answer:
    return Answer(200, {"image": call.body["input"]}, delay_s=0.15)


def test_a_fork_of_12_reaches_and_never_exceeds_5_in_flight(
    worker: Worker, upstream: FakeUpstream
) -> None:
    upstream.script("/render", slow)
    pipeline = new_pipeline(fork_of(upstream.url("/render")), cost=3)
    user = Customer(quota=3)
    prompts = [f"p{i}" for i in range(12)]

    task = user.wait(user.create(pipeline, {"prompts": prompts}).json()["id"])

    assert task["status"] == "succeeded", task
    assert upstream.max_in_flight == 5
    assert len(upstream.calls_to("/render")) == 12
    # allSettled, in branch order, whatever order the calls finished in
    assert task["output"] == [{"status": "fulfilled", "value": {"image": p}} for p in prompts]
    assert [b["index"] for b in task["steps"][0]["branches"]] == list(range(12))
    keys = sorted(c.headers["idempotency-key"] for c in upstream.calls)
    assert keys == sorted(f"{task['id']}:render:{i}" for i in range(12))
    bodies = {c.body["branch"]: c.body for c in upstream.calls}
    assert bodies[3] == {
        "task_id": task["id"],
        "step_id": "render",
        "branch": 3,
        "input": "p3",
        "previous": None,
    }
    assert user.quota() == (0, 0)


def test_two_forks_at_once_never_exceed_the_host_cap(
    worker: Worker, upstream: FakeUpstream
) -> None:
    upstream.script("/render", slow)
    with settings_env(PIPELINE_HOST_CONCURRENCY="6"):
        pipeline = new_pipeline(fork_of(upstream.url("/render")), cost=1)
        user = Customer(quota=2)
        prompts = [f"p{i}" for i in range(12)]
        ids = []
        barrier = threading.Barrier(2)

        def start() -> None:
            barrier.wait()
            ids.append(user.create(pipeline, {"prompts": prompts}).json()["id"])

        threads = [threading.Thread(target=start) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        tasks = [user.wait(task_id, timeout=40) for task_id in ids]

    assert [t["status"] for t in tasks] == ["succeeded", "succeeded"]
    assert len(upstream.calls_to("/render")) == 24
    assert upstream.max_in_flight == 6


def test_all_settled_output_keeps_rejections_and_min_success_decides(
    worker: Worker, upstream: FakeUpstream
) -> None:
    def some_fail(call: Call) -> Answer:
        if call.body["input"].startswith("bad"):
            return Answer(400, {"error": "nope"})
        return Answer(200, {"ok": call.body["input"]})

    upstream.script("/render", some_fail)
    lenient = new_pipeline(fork_of(upstream.url("/render"), min_success=2), cost=2)
    strict = new_pipeline(fork_of(upstream.url("/render")), cost=2)
    user = Customer(quota=4)
    prompts = ["good1", "bad1", "good2", "bad2"]

    ok = user.wait(user.create(lenient, {"prompts": prompts}).json()["id"])
    failed = user.wait(user.create(strict, {"prompts": prompts}).json()["id"])

    assert ok["status"] == "succeeded"
    assert [r["status"] for r in ok["output"]] == ["fulfilled", "rejected", "fulfilled", "rejected"]
    assert ok["output"][0] == {"status": "fulfilled", "value": {"ok": "good1"}}
    assert ok["output"][1]["reason"]["code"] == "PIPELINE_STEP_FAILED"
    assert failed["status"] == "failed"
    assert failed["error"]["code"] == "PIPELINE_STEP_FAILED"
    assert "2 of 4 branches succeeded, 4 needed" in failed["error"]["message"]
    fork = failed["steps"][0]
    assert fork["status"] == "failed"
    assert [b["status"] for b in fork["branches"]] == ["succeeded", "failed", "succeeded", "failed"]
    assert fork["output"][1]["status"] == "rejected"
    # 400 is not retried: one call per bad item and task
    assert sum(1 for c in upstream.calls if c.body["input"] == "bad1") == 2
    assert user.quota() == (2, 0)  # one charged, one refunded


def test_a_failing_step_is_called_exactly_one_plus_retries_times(
    worker: Worker, upstream: FakeUpstream
) -> None:
    upstream.script("/flaky", lambda _call: Answer(503, {"error": "busy"}))
    pipeline = new_pipeline(
        [{"id": "draft", "type": "http", "url": upstream.url("/flaky"), "retries": 2}], cost=1
    )
    user = Customer(quota=1)
    retryable_before = calls_counted("retryable")

    task = user.wait(user.create(pipeline).json()["id"])

    assert task["status"] == "failed"
    assert len(upstream.calls_to("/flaky")) == 3
    assert calls_counted("retryable") - retryable_before == 3
    assert "503" in task["error"]["message"]
    gaps = [b.started - a.started for a, b in zip(upstream.calls, upstream.calls[1:], strict=False)]
    assert gaps[0] >= 0.5 and gaps[1] >= 1.0  # exponential backoff from 0.5 s
    assert {c.headers["idempotency-key"] for c in upstream.calls} == {f"{task['id']}:draft:-"}
    assert user.quota() == (1, 0)


def test_a_4xx_is_not_retried_and_a_non_json_2xx_is_retried_then_fails(
    worker: Worker, upstream: FakeUpstream
) -> None:
    upstream.script("/gone", lambda _call: Answer(404, {}))
    upstream.script("/text", lambda _call: Answer(200, raw=b"not json"))
    user = Customer(quota=2)
    gone = new_pipeline([{"id": "a", "type": "http", "url": upstream.url("/gone")}])
    text = new_pipeline([{"id": "a", "type": "http", "url": upstream.url("/text")}])

    assert user.wait(user.create(gone).json()["id"])["status"] == "failed"
    assert user.wait(user.create(text).json()["id"])["status"] == "failed"
    assert len(upstream.calls_to("/gone")) == 1
    assert len(upstream.calls_to("/text")) == 3  # like a 5xx: 1 + retries (2)


def test_a_408_is_the_upstream_timing_out_and_is_retried_like_a_timeout(
    worker: Worker, upstream: FakeUpstream
) -> None:
    upstream.script("/late", lambda _call: Answer(408, {}))
    user = Customer(quota=1)
    late = new_pipeline([{"id": "a", "type": "http", "url": upstream.url("/late"), "retries": 1}])

    task = user.wait(user.create(late).json()["id"])

    assert task["status"] == "failed"
    assert "answered 408 (called 2 times)" in task["error"]["message"], task
    assert len(upstream.calls_to("/late")) == 2
    assert user.quota() == (1, 0)


def test_429_retry_after_is_honoured_inline_and_by_requeue(
    worker: Worker, upstream: FakeUpstream
) -> None:
    def limited(after: str) -> Any:
        def script(call: Call) -> Answer:
            if len(upstream.calls_to(call.path)) == 1:
                return Answer(429, {"error": "slow down"}, headers={"Retry-After": after})
            return Answer(200, {"done": True})

        return script

    upstream.script("/short", limited("1"))
    upstream.script("/long", limited("3"))  # longer than an inline wait: re-queued
    user = Customer(quota=2)
    short = new_pipeline([{"id": "a", "type": "http", "url": upstream.url("/short")}])
    long = new_pipeline([{"id": "a", "type": "http", "url": upstream.url("/long")}])

    first = user.create(short).json()["id"]
    second = user.create(long).json()["id"]
    assert user.wait(first)["status"] == "succeeded"
    assert user.wait(second)["status"] == "succeeded"

    for path, wait in (("/short", 1.0), ("/long", 3.0)):
        calls = upstream.calls_to(path)
        assert len(calls) == 2
        assert calls[1].started - calls[0].started >= wait - 0.05


@pytest.mark.parametrize("after", ["-1", "soon"])
def test_a_retry_after_that_is_no_delay_leaves_the_backoff_in_force(
    worker: Worker, upstream: FakeUpstream, after: str
) -> None:
    def limited(call: Call) -> Answer:
        if len(upstream.calls_to(call.path)) == 1:
            return Answer(429, {"error": "slow down"}, headers={"Retry-After": after})
        return Answer(200, {"done": True})

    upstream.script("/busy", limited)
    user = Customer(quota=1)
    busy = new_pipeline([{"id": "a", "type": "http", "url": upstream.url("/busy")}])

    assert user.wait(user.create(busy).json()["id"])["status"] == "succeeded"
    calls = upstream.calls_to("/busy")
    assert len(calls) == 2
    assert calls[1].started - calls[0].started >= 0.5 - 0.05  # the first backoff, 0.5 s


def test_a_timeout_is_retried(worker: Worker, upstream: FakeUpstream) -> None:
    def stall_once(call: Call) -> Answer:
        first = len(upstream.calls_to(call.path)) == 1
        return Answer(200, {"ok": True}, delay_s=1.5 if first else 0)

    upstream.script("/slow", stall_once)
    pipeline = new_pipeline(
        [{"id": "a", "type": "http", "url": upstream.url("/slow"), "timeout_s": 0.5}]
    )
    user = Customer(quota=1)

    task = user.wait(user.create(pipeline).json()["id"])

    assert task["status"] == "succeeded"
    assert len(upstream.calls_to("/slow")) == 2


def test_previous_output_flows_into_the_next_step(worker: Worker, upstream: FakeUpstream) -> None:
    upstream.script("/draft", lambda _call: Answer(200, {"draft": "d1"}))
    upstream.script("/pick", lambda call: Answer(200, {"picked_from": call.body["previous"]}))
    pipeline = new_pipeline(
        [
            {"id": "draft", "type": "http", "url": upstream.url("/draft")},
            {"id": "pick", "type": "http", "url": upstream.url("/pick")},
        ]
    )
    user = Customer(quota=1)

    task = user.wait(user.create(pipeline, {"topic": "cats"}).json()["id"])

    assert task["output"] == {"picked_from": {"draft": "d1"}}
    assert upstream.calls_to("/draft")[0].body["input"] == {"topic": "cats"}


def test_fork_branches_list_runs_each_step(worker: Worker, upstream: FakeUpstream) -> None:
    pipeline = new_pipeline(
        [
            {
                "id": "mix",
                "type": "fork",
                "branches": [
                    {"type": "http", "url": upstream.url("/a")},
                    {"type": "sim", "duration_ms": 5},
                    {"type": "sim", "duration_ms": 5, "fail": True},
                ],
                "min_success": 2,
            }
        ]
    )
    user = Customer(quota=1)

    task = user.wait(user.create(pipeline, {"k": 1}).json()["id"])

    assert task["status"] == "succeeded"
    assert [r["status"] for r in task["output"]] == ["fulfilled", "fulfilled", "rejected"]
    assert upstream.calls_to("/a")[0].body["input"] == {"k": 1}


def test_lowering_pipeline_max_branches_lets_a_running_fork_finish(
    worker: Worker, upstream: FakeUpstream
) -> None:
    release = threading.Event()

    def held(call: Call) -> Answer:
        release.wait(10)
        return Answer(200, {"image": call.body["input"]})

    upstream.script("/render", held)
    pipeline = new_pipeline(fork_of(upstream.url("/render")), cost=1)
    user = Customer(quota=1)
    prompts = [f"p{i}" for i in range(8)]
    with settings_env(PIPELINE_MAX_BRANCHES="8"):
        task_id = user.create(pipeline, {"prompts": prompts}).json()["id"]
    deadline = time.monotonic() + 10
    while not upstream.calls_to("/render"):
        assert time.monotonic() < deadline, "no branch started"
        time.sleep(0.01)

    with settings_env(PIPELINE_MAX_BRANCHES="6"):
        release.set()
        task = user.wait(task_id)
        # The limit still holds for a new task.
        refused = Customer(quota=1).create(pipeline, {"prompts": prompts})

    assert task["status"] == "succeeded", task
    assert task["output"] == [{"status": "fulfilled", "value": {"image": p}} for p in prompts]
    assert sorted(c.body["branch"] for c in upstream.calls_to("/render")) == list(range(8))
    assert user.quota() == (0, 0)
    assert refused.status == 422
    assert "PIPELINE_MAX_BRANCHES" in refused.json()["details"][0]["msg"]
