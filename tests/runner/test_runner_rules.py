"""Runner rules seen directly: host slot leases, the window against stray messages,
cancel in the middle of a fork, and the Retry-After parser."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from app.events.queue import queue_handler
from app.runner import slots
from app.runner.calls import retry_after_s
from app.runner.worker import handle
from tests.fakes.upstream import Answer, FakeUpstream
from tests.support.logs import capture_logs
from tests.support.pipelines import Customer, Worker, new_fork, new_pipeline


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream() as fake:
        yield fake


def test_a_slot_whose_holder_died_is_free_again_when_its_lease_ends() -> None:
    host = "slots.example:80"
    # A lease long enough that a slow run cannot lose it between the calls that follow.
    first = slots.acquire(host, cap=1, lease_s=1.0)
    assert first is not None
    assert slots.acquire(host, cap=1, lease_s=1.0) is None
    assert slots.in_use(host) == 1
    time.sleep(1.05)  # the holder never released: its lease ran out
    second = slots.acquire(host, cap=1, lease_s=5)
    assert second is not None
    slots.release(host, second)
    assert slots.in_use(host) == 0


def test_a_slot_handed_on_is_renewed_only_while_still_held() -> None:
    host = "renew.example:80"
    held = slots.acquire(host, cap=1, lease_s=1.0)  # not lost before the renewal, however slow
    assert held is not None
    assert slots.renew(host, held, lease_s=5)
    time.sleep(1.05)  # past its first lease: still held, by the renewal
    assert slots.acquire(host, cap=1, lease_s=5) is None
    slots.release(host, held)
    # Gone (released, or dropped once its lease ran out): renewing it adds nothing.
    assert not slots.renew(host, held, lease_s=5)
    assert slots.in_use(host) == 0


def test_concurrent_acquires_never_exceed_the_cap() -> None:
    host = "race.example:80"
    won: list[str] = []
    barrier = threading.Barrier(20)

    def grab() -> None:
        barrier.wait()
        token = slots.acquire(host, cap=3, lease_s=5)
        if token:
            won.append(token)

    threads = [threading.Thread(target=grab) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(won) == 3
    for token in won:
        slots.release(host, token)


def test_a_message_for_a_branch_the_fork_never_dispatched_does_nothing(
    worker: Worker, upstream: FakeUpstream
) -> None:
    from app.queue import publish

    gate = threading.Event()
    upstream.script("/r", lambda _c: Answer(200, {}) if gate.wait(5) else Answer(500))
    pipeline = new_fork(upstream.url("/r"))
    user = Customer(quota=1)
    task_id = user.create(pipeline, {"items": list(range(8))}).json()["id"]
    while upstream.in_flight < 5:
        time.sleep(0.01)

    publish("pipeline-worker", {"kind": "branch", "task_id": task_id, "step": 0, "branch": 7})
    time.sleep(0.2)
    assert upstream.max_in_flight == 5
    gate.set()
    assert user.wait(task_id)["status"] == "succeeded"
    assert len(upstream.calls) == 8


def test_cancel_in_the_middle_of_a_fork_discards_results_and_dispatches_no_more(
    worker: Worker, upstream: FakeUpstream
) -> None:
    gate = threading.Event()
    upstream.script("/r", lambda _c: Answer(200, {"late": True}) if gate.wait(5) else Answer(500))
    pipeline = new_fork(upstream.url("/r"), cost=2)
    user = Customer(quota=2)
    task_id = user.create(pipeline, {"items": list(range(12))}).json()["id"]
    while upstream.in_flight < 5:
        time.sleep(0.01)

    cancelled = user.cancel(task_id).json()
    gate.set()
    worker.wait_idle()

    assert cancelled["status"] == "cancelled"
    task = user.get(task_id).json()
    assert task["status"] == "cancelled"
    assert {b["status"] for b in task["steps"][0]["branches"]} == {"cancelled"}
    assert all(b["output"] is None for b in task["steps"][0]["branches"])
    assert len(upstream.calls) == 5
    assert user.quota() == (2, 0)


def test_a_branch_run_after_its_predecessor_in_the_same_invocation_stops_at_cancel(
    worker: Worker, upstream: FakeUpstream
) -> None:
    gate = threading.Event()
    # The first window answers at once; the branches each settle claims for its own
    # invocation to run next wait for the gate.
    upstream.script(
        "/r",
        lambda c: Answer(200, {"late": True})
        if c.body["branch"] < 5 or gate.wait(5)
        else Answer(500),
    )
    pipeline = new_fork(upstream.url("/r"), cost=2)
    user = Customer(quota=2)
    task_id = user.create(pipeline, {"items": list(range(12))}).json()["id"]
    while len(upstream.calls) < 10 or upstream.in_flight < 5:
        time.sleep(0.01)

    user.cancel(task_id)
    gate.set()
    worker.wait_idle()

    # One step message and the first window's five: branches 5..9 ran in the invocations
    # of 0..4, with no message of their own.
    assert worker.deliveries == 6
    branches = user.get(task_id).json()["steps"][0]["branches"]
    assert [b["status"] for b in branches] == ["succeeded"] * 5 + ["cancelled"] * 7
    assert all(b["output"] is None for b in branches[5:])
    assert sorted(c.body["branch"] for c in upstream.calls) == list(range(10))
    assert upstream.max_in_flight == 5
    assert slots.in_use(f"127.0.0.1:{upstream.port}") == 0  # every slot handed on came back
    assert user.quota() == (2, 0)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("3", 3.0),
        ("0", 0.0),
        ("-4", None),
        ("-0.5", None),
        ("-inf", None),
        ("1e309", 60.0),
        ("120", 60.0),
        ("soon", None),
        (None, None),
        ("nan", None),
    ],
)
def test_retry_after_is_read_as_seconds_and_capped(
    header: str | None, expected: float | None
) -> None:
    assert retry_after_s(header) == expected


def test_retry_after_as_an_http_date() -> None:
    from email.utils import formatdate

    seconds = retry_after_s(formatdate(time.time() + 10, usegmt=True))
    assert seconds is not None and 8 <= seconds <= 10
    assert retry_after_s(formatdate(time.time() - 10, usegmt=True)) == 0.0  # past: now
    assert retry_after_s(formatdate(time.time() + 3600, usegmt=True)) == 60.0


def test_an_unreachable_upstream_is_retried_then_fails(worker: Worker) -> None:
    from tests.support.net import closed_port

    pipeline = new_pipeline(
        [{"id": "a", "type": "http", "url": f"http://127.0.0.1:{closed_port()}/x", "retries": 1}]
    )
    user = Customer(quota=1)
    task = user.wait(user.create(pipeline).json()["id"])
    assert task["status"] == "failed"
    assert "could not be reached (called 2 times)" in task["error"]["message"]
    assert user.quota() == (1, 0)


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (b"<html>oops</html>", "not valid JSON"),
        (b'{"score": NaN}', "NaN is not a number JSON can carry"),
        (b'{"score": -Infinity}', "-Infinity is not a number JSON can carry"),
        (b"[" * 20 + b"]" * 20, "nested 20 deep, at most 16 allowed"),
        (b'{"text": "\\ud800"}', "text that is not valid Unicode (a lone surrogate)"),
    ],
    ids=["html", "nan", "infinity", "too-deep", "lone-surrogate"],
)
def test_an_answer_that_cannot_be_stored_is_a_failed_attempt_retried_like_a_5xx(
    worker: Worker, upstream: FakeUpstream, raw: bytes, why: str
) -> None:
    upstream.script("/x", lambda _c: Answer(200, raw=raw))
    pipeline = new_pipeline([{"id": "a", "type": "http", "url": upstream.url("/x"), "retries": 2}])
    user = Customer(quota=1)
    task = user.wait(user.create(pipeline, {"text": "hi"}).json()["id"])

    # Failed and refunded by the runner itself, not left running for the sweeper.
    assert task["status"] == "failed"
    assert f"answered 200: {why} (called 3 times)" in task["error"]["message"], task
    assert user.quota() == (1, 0)
    calls = upstream.calls_to("/x")
    assert len(calls) == 3
    assert calls[0].headers["content-type"] == "application/json"
    assert calls[0].body["input"] == {"text": "hi"} and calls[0].headers["idempotency-key"]


def test_a_fork_over_no_items_joins_at_once(worker: Worker) -> None:
    pipeline = new_pipeline(
        [
            {"id": "f", "type": "fork", "for_each": "input.items", "step": {"type": "sim"}},
            {"id": "after", "type": "sim", "duration_ms": 1},
        ]
    )
    user = Customer(quota=1)
    task = user.wait(user.create(pipeline, {"items": []}).json()["id"])
    assert task["status"] == "succeeded"
    assert task["steps"][0]["output"] == [] and task["steps"][0]["branches"] == []
    assert user.quota() == (0, 0)


def test_the_workers_lines_name_the_task_of_their_message() -> None:
    task_id = "0" * 31 + "1"  # no such task: the message is read and ends there
    with capture_logs() as logs:
        queue_handler(handle)({"kind": "step", "task_id": task_id, "step": 0}, {})
    assert logs.where(message="queue message", outcome="ok", task_id=task_id)
