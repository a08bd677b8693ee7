"""Idempotency-Key edge cases of POST /tasks: a replay is answered before the body is
judged, keys are compared byte for byte, and duplicates of a refused request never 500."""

from __future__ import annotations

from collections import Counter
from typing import Any

from sqlalchemy import event, update

from app import idempotency
from app.clock import utcnow
from app.db.engine import get_engine
from app.db.tables import idempotency_keys
from app.db.transaction import transaction
from tests.support.function_url import Reply
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


def test_a_key_claimed_again_while_the_purge_runs_is_kept_and_replayed() -> None:
    """The purge reads the expired keys, then deletes them: a key a request claimed afresh
    in between (its old row expired, so a new request) is not expired, and stays."""
    pipeline = new_pipeline(QUICK, cost=1)
    user = Customer(quota=5)
    assert user.create(pipeline, {"a": 1}, key="k-purged").status == 201
    expire_keys_of(user.id)
    renewed: list[Reply] = []

    def claim_again(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        purging = statement.startswith("DELETE FROM idempotency_keys") and " IN " in statement
        if purging and not renewed:  # once: the request's own statements pass through here too
            renewed.append(user.create(pipeline, {"a": 1}, key="k-purged"))

    engine = get_engine()
    event.listen(engine, "before_cursor_execute", claim_again)
    try:
        idempotency.purge_expired()
    finally:
        event.remove(engine, "before_cursor_execute", claim_again)

    assert [r.status for r in renewed] == [201]
    retry = user.create(pipeline, {"a": 1}, key="k-purged")
    assert retry.status == 201, retry.body
    assert retry.json()["id"] == renewed[0].json()["id"]
    assert user.quota() == (3, 2)  # two tasks: the first, and the renewed key's once


def expire_keys_of(user_id: str) -> None:
    with transaction() as conn:
        conn.execute(
            update(idempotency_keys)
            .where(idempotency_keys.c.user_id == user_id)
            .values(expires_at=utcnow())
        )
