"""POST /admin/users/{id}/quota through the admin-users-quota function."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from app.db.tables import quota_ledger
from app.db.transaction import transaction
from app.ids import new_id
from app.quota.service import QUOTA_MAX
from tests.support.function_url import Reply, call
from tests.support.functions import handler
from tests.support.pipelines import token_for
from tests.support.quota import counters, new_user


def token(role: str = "admin") -> str:
    return token_for(new_user(role=role))


def adjust(user_id: str, body: Any, *, role: str = "admin", **kwargs: Any) -> Reply:
    return call(
        handler("admin-users-id"),
        "POST",
        f"/admin/users/{user_id}/quota",
        body=body,
        token=token(role) if role else None,
        **kwargs,
    )


def admin_entries(user_id: str) -> list[tuple[int, str, str | None]]:
    with transaction() as conn:
        rows = conn.execute(
            select(quota_ledger.c.balance_delta, quota_ledger.c.reason, quota_ledger.c.ref)
            .where(quota_ledger.c.user_id == user_id, quota_ledger.c.kind == "admin")
            .order_by(quota_ledger.c.created_at)
        )
        return [(row.balance_delta, row.reason, row.ref) for row in rows]


def test_an_admin_grants_quota_and_gets_the_user_back() -> None:
    user = new_user()

    reply = adjust(user, {"delta": 25, "reason": " compensation for outage "})

    assert reply.status == 200, reply.body
    body = reply.json()
    assert body["id"] == user
    assert body["quota"] == {"balance": 25, "reserved": 0}
    assert set(body) >= {"id", "phone", "role", "quota", "membership", "created_at"}
    assert admin_entries(user) == [(25, "compensation for outage", None)]


def test_an_admin_takes_quota_away() -> None:
    user = new_user(10)

    reply = adjust(user, {"delta": -4, "reason": "refund reversed"})

    assert reply.status == 200, reply.body
    assert reply.json()["quota"] == {"balance": 6, "reserved": 0}


def test_the_same_idempotency_key_applies_once_and_another_body_is_409() -> None:
    user, key = new_user(), new_id()

    first = adjust(user, {"delta": 5, "reason": "gift"}, headers={"Idempotency-Key": key})
    again = adjust(user, {"delta": 5, "reason": "gift"}, headers={"Idempotency-Key": key})
    other = adjust(user, {"delta": 6, "reason": "gift"}, headers={"Idempotency-Key": key})

    assert (first.status, again.status) == (200, 200)
    assert again.json()["quota"] == {"balance": 5, "reserved": 0}
    assert other.status == 409
    assert other.json()["code"] == "IDEMPOTENCY_KEY_MISMATCH"
    assert admin_entries(user) == [(5, "gift", f"admin:{key}")]


def test_an_unknown_user_is_404() -> None:
    reply = adjust(new_id(), {"delta": 5, "reason": "gift"})

    assert reply.status == 404
    assert reply.json()["code"] == "NOT_FOUND"


@pytest.mark.parametrize(
    "body",
    [
        {"delta": 0, "reason": "nothing"},
        {"delta": "5", "reason": "a string"},
        {"delta": 1.5, "reason": "a fraction"},
        {"delta": True, "reason": "a bool"},
        {"delta": 2**31, "reason": "too big"},
        {"delta": 5, "reason": ""},
        {"delta": 5, "reason": "   "},
        {"delta": 5, "reason": "x" * 201},
        {"delta": 5},
        {"reason": "no delta"},
    ],
    ids=[
        "zero",
        "string",
        "fraction",
        "bool",
        "too-big",
        "empty-reason",
        "blank-reason",
        "long-reason",
        "no-reason",
        "no-delta",
    ],
)
def test_a_bad_body_is_422_and_changes_nothing(body: dict[str, Any]) -> None:
    user = new_user(3)

    reply = adjust(user, body)

    assert reply.status == 422, reply.body
    assert reply.json()["code"] == "VALIDATION_ERROR"
    assert counters(user) == (3, 0)


def test_taking_more_than_the_balance_is_422_with_a_clear_message() -> None:
    user = new_user(3)

    reply = adjust(user, {"delta": -4, "reason": "too much"})

    assert reply.status == 422
    body = reply.json()
    assert "below zero" in body["message"]
    # As every other 422 of the API, the field at fault is named.
    assert [detail["loc"] for detail in body["details"]] == [["body", "delta"]]
    assert "below zero" in body["details"][0]["msg"]
    assert counters(user) == (3, 0)


def test_a_grant_past_the_ceiling_is_422_naming_the_delta() -> None:
    user = new_user(QUOTA_MAX - 5)

    reply = adjust(user, {"delta": 6, "reason": "too much"})

    assert reply.status == 422
    body = reply.json()
    assert [detail["loc"] for detail in body["details"]] == [["body", "delta"]]
    assert counters(user) == (QUOTA_MAX - 5, 0)


@pytest.mark.parametrize(
    "key", ["", " ", "k" * 59, "bad\x01key"], ids=["empty", "blank", "long", "control"]
)
def test_a_bad_idempotency_key_is_422(key: str) -> None:
    user = new_user()

    reply = adjust(user, {"delta": 5, "reason": "gift"}, headers={"Idempotency-Key": key})

    assert reply.status == 422
    assert reply.json()["details"][0]["loc"] == ["header", "Idempotency-Key"]
    assert counters(user) == (0, 0)


def test_without_a_token_it_is_401_and_for_a_non_admin_403() -> None:
    user = new_user()

    anonymous = adjust(user, {"delta": 5, "reason": "gift"}, role="")
    plain_user = adjust(user, {"delta": 5, "reason": "gift"}, role="user")

    assert (anonymous.status, anonymous.json()["code"]) == (401, "AUTH_REQUIRED")
    assert (plain_user.status, plain_user.json()["code"]) == (403, "FORBIDDEN")
    assert counters(user) == (0, 0)
