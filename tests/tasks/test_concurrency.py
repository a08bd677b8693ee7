"""Real threads against MariaDB: quota that covers 20 tasks, 50 concurrent POST /tasks."""

from __future__ import annotations

from collections import Counter

from tests.support.at_once import run_at_once
from tests.support.pipelines import Customer, new_pipeline


def test_fifty_concurrent_creates_on_quota_for_twenty_make_exactly_twenty() -> None:
    pipeline = new_pipeline([{"id": "a", "type": "sim", "duration_ms": 1}], cost=3)
    user = Customer(quota=60)

    replies = run_at_once(50, lambda i: user.create(pipeline, {"n": i}))

    statuses = Counter(r.status for r in replies)
    assert statuses == {201: 20, 402: 30}, statuses
    assert {r.json()["code"] for r in replies if r.status == 402} == {"QUOTA_INSUFFICIENT"}
    assert user.quota() == (0, 60)
    listed = user.list(limit=100).json()["items"]
    assert len(listed) == 20
    assert {t["id"] for t in listed} == {r.json()["id"] for r in replies if r.status == 201}

    # Then cancel each twice at once: each refunds exactly once.
    ids = [t["id"] for t in listed]
    cancels = run_at_once(40, lambda i: user.cancel(ids[i % 20]))
    assert Counter(r.status for r in cancels) == {200: 20, 409: 20}
    assert user.quota() == (60, 0)


def test_concurrent_keyed_creates_across_many_keys_charge_each_key_once() -> None:
    pipeline = new_pipeline([{"id": "a", "type": "sim", "duration_ms": 1}], cost=1)
    user = Customer(quota=10)

    replies = run_at_once(30, lambda i: user.create(pipeline, {"k": i % 5}, key=f"key-{i % 5}"))

    assert Counter(r.status for r in replies) == {201: 30}
    by_key: dict[int, set[str]] = {}
    for reply in replies:
        by_key.setdefault(reply.json()["input"]["k"], set()).add(reply.json()["id"])
    assert all(len(ids) == 1 for ids in by_key.values()) and len(by_key) == 5
    assert user.quota() == (5, 5)
