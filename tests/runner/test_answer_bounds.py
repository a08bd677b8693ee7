"""An upstream answer is read no further than a step could keep: however large the body,
the worker's memory stays bounded and the attempt fails like any answer not stored."""

from __future__ import annotations

import tracemalloc
from collections.abc import Iterator

import pytest

from app.outbound.client import call
from app.runner.calls import ANSWER_MAX_BYTES
from tests.fakes.upstream import Answer, FakeUpstream
from tests.support.pipelines import Customer, Worker, new_pipeline

HUGE = 64 * 1024 * 1024


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream() as fake:
        yield fake


def test_a_huge_answer_is_a_failed_attempt_read_no_further_than_a_step_keeps(
    worker: Worker, upstream: FakeUpstream
) -> None:
    upstream.script("/big", lambda _c: Answer(200, filler_bytes=HUGE))
    pipeline = new_pipeline(
        [{"id": "a", "type": "http", "url": upstream.url("/big"), "retries": 1}]
    )
    user = Customer(quota=1)
    tracemalloc.start()
    try:
        task = user.wait(user.create(pipeline).json()["id"])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()

    assert task["status"] == "failed"
    # Both answers together are 128 MiB: what was held is a few times the bound, no more.
    assert peak < 4 * ANSWER_MAX_BYTES, peak
    expected = f"answered 200: more than {ANSWER_MAX_BYTES} bytes (called 2 times)"
    assert expected in task["error"]["message"], task
    assert len(upstream.calls_to("/big")) == 2
    assert user.quota() == (1, 0)


def test_the_client_reads_at_most_max_bytes_and_says_the_body_was_cut(
    upstream: FakeUpstream,
) -> None:
    upstream.script("/big", lambda _c: Answer(500, filler_bytes=HUGE))
    upstream.script("/small", lambda _c: Answer(200, {"ok": True}))

    reply = call(
        "POST", upstream.url("/big"), json_body={}, timeout_s=5, public_only=False, max_bytes=1000
    )
    assert (reply.status, reply.cut, len(reply.body)) == (500, True, 1000)
    # The connection left with the unread rest is not used again: the next call is whole.
    after = call(
        "POST", upstream.url("/small"), json_body={}, timeout_s=5, public_only=False, max_bytes=1000
    )
    assert (after.status, after.cut, after.json()) == (200, False, {"ok": True})
    exact = call(
        "POST",
        upstream.url("/small"),
        json_body={},
        timeout_s=5,
        public_only=False,
        max_bytes=len(after.body),
    )
    assert (exact.cut, exact.body) == (False, after.body)
