"""Idempotency-Key edge cases of POST /tasks: a replay is answered before the body is
judged, keys are compared byte for byte, and duplicates of a refused request never 500."""

from __future__ import annotations

from collections import Counter

from tests.support.pipelines import Customer, new_pipeline, save_pipeline
from tests.tasks.test_concurrency import run_at_once

QUICK = [{"id": "a", "type": "sim", "duration_ms": 1}]


def test_a_replay_after_the_pipeline_was_disabled_is_the_first_answer() -> None:
    pipeline = new_pipeline(QUICK, cost=1)
    user = Customer(quota=5)
    first = user.create(pipeline, {"a": 1}, key="k-disabled")
    assert first.status == 201, first.body
    save_pipeline(pipeline, {"name": pipeline, "cost": 1, "enabled": False, "steps": QUICK})

    again = user.create(pipeline, {"a": 1}, key="k-disabled")
    assert again.status == 201, again.body
    assert again.json() == first.json()
    assert user.create(pipeline, {"a": 1}).status == 404  # without the key: disabled
    assert user.quota() == (4, 1)


def test_a_different_body_under_a_used_key_is_409_even_when_it_names_no_pipeline() -> None:
    pipeline = new_pipeline(QUICK, cost=1)
    user = Customer(quota=5)
    assert user.create(pipeline, {"a": 1}, key="k-other").status == 201

    reply = user.create("nope-" + pipeline, {"a": 1}, key="k-other")
    assert reply.status == 409, reply.body
    assert reply.json()["code"] == "IDEMPOTENCY_KEY_MISMATCH"
    reply = user.create(pipeline, {"a": 1, "b": [1] * 2000}, key="k-other")
    assert reply.json()["code"] == "IDEMPOTENCY_KEY_MISMATCH"


def test_keys_differing_in_case_or_accents_are_different_keys() -> None:
    pipeline = new_pipeline(QUICK, cost=1)
    user = Customer(quota=5)
    replies = [user.create(pipeline, {"x": 1}, key=key) for key in ("AbC", "abc", "abç")]
    assert [r.status for r in replies] == [201, 201, 201], [r.body for r in replies]
    assert len({r.json()["id"] for r in replies}) == 3
    assert user.quota() == (2, 3)
    assert user.create(pipeline, {"x": 1}, key="abc").json() == replies[1].json()


def test_concurrent_duplicates_of_a_refused_request_are_all_refused_never_500() -> None:
    pipeline = new_pipeline(QUICK, cost=3)
    seen: Counter[tuple[int, str]] = Counter()
    for round_ in range(10):
        user = Customer(quota=0)
        key = f"refused-{round_}"
        replies = run_at_once(
            6, lambda _i, user=user, key=key: user.create(pipeline, {"x": 1}, key=key)
        )
        seen.update((r.status, r.json().get("code", "")) for r in replies)
        assert user.quota() == (0, 0)
    assert seen == Counter({(402, "QUOTA_INSUFFICIENT"): 60}), seen
