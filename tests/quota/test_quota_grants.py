"""Grants: signup, purchase and admin changes to the balance, idempotent by ref."""

from __future__ import annotations

import secrets
from typing import Any

import pytest
from sqlalchemy import select

from app.db.tables import quota_ledger, users
from app.db.transaction import transaction
from app.errors import AppError, ErrorCode
from app.ids import new_id
from app.quota import cancel, grant, reserve
from app.quota.service import QUOTA_MAX
from tests.support.quota import counters, new_user


def entries(user_id: str) -> list[Any]:
    with transaction() as conn:
        return list(
            conn.execute(
                select(quota_ledger)
                .where(quota_ledger.c.user_id == user_id)
                .order_by(quota_ledger.c.created_at)
            )
        )


def test_a_purchase_adds_to_the_balance_and_records_why() -> None:
    user = new_user()
    ref = f"order:{new_id()}"

    result = grant(user, 50, kind="purchase", reason="plan pro", ref=ref)

    assert result.applied is True
    entry = result.entry
    assert (entry.kind, entry.balance_delta, entry.reserved_delta) == ("purchase", 50, 0)
    assert (entry.balance_after, entry.reserved_after, entry.ref) == (50, 0, ref)
    assert counters(user) == (50, 0)
    assert [(e.kind, e.reason) for e in entries(user)] == [("purchase", "plan pro")]


def test_a_grant_with_a_ref_already_applied_returns_the_first_entry() -> None:
    user = new_user()
    ref = f"order:{new_id()}"
    first = grant(user, 50, kind="purchase", reason="plan pro", ref=ref)

    again = grant(user, 50, kind="purchase", reason="plan pro", ref=ref)

    assert again.applied is False
    assert again.entry == first.entry
    assert counters(user) == (50, 0)


@pytest.mark.parametrize(
    ("who", "amount", "kind", "reason"),
    [
        ("other", 50, "purchase", "plan pro"),
        ("same", 60, "purchase", "plan pro"),
        ("same", 50, "admin", "plan pro"),
        ("same", 50, "purchase", "plan max"),
    ],
    ids=["user", "amount", "kind", "reason"],
)
def test_a_ref_reused_with_other_terms_is_409(
    who: str, amount: int, kind: Any, reason: str
) -> None:
    user, other = new_user(), new_user()
    ref = f"order:{new_id()}"
    grant(user, 50, kind="purchase", reason="plan pro", ref=ref)

    with pytest.raises(AppError) as caught:
        grant(other if who == "other" else user, amount, kind=kind, reason=reason, ref=ref)

    assert caught.value.code is ErrorCode.IDEMPOTENCY_KEY_MISMATCH
    assert counters(user) == (50, 0)
    assert counters(other) == (0, 0)


def test_grants_without_ref_each_apply() -> None:
    user = new_user()

    grant(user, 5, kind="signup", reason="welcome")
    grant(user, 5, kind="signup", reason="welcome")

    assert counters(user) == (10, 0)


def test_an_admin_can_take_quota_away_down_to_zero_but_not_below() -> None:
    user = new_user(10)
    reserve(user, new_id(), 4)  # reserved quota is not the admin's to take

    with pytest.raises(AppError) as caught:
        grant(user, -7, kind="admin", reason="abuse")
    assert caught.value.code is ErrorCode.VALIDATION_ERROR
    assert "below zero" in caught.value.message
    assert counters(user) == (6, 4)

    result = grant(user, -6, kind="admin", reason="abuse")
    assert (result.entry.balance_after, result.entry.reserved_after) == (0, 4)
    assert counters(user) == (0, 4)


def test_a_balance_cannot_grow_past_the_column() -> None:
    user = new_user(10)
    with pytest.raises(AppError) as caught:
        grant(user, QUOTA_MAX - 9, kind="admin", reason="too much")
    assert caught.value.code is ErrorCode.VALIDATION_ERROR
    assert grant(user, QUOTA_MAX - 10, kind="admin", reason="all of it").applied
    assert counters(user) == (QUOTA_MAX, 0)


def test_balance_and_reserved_together_stay_within_the_column() -> None:
    # Granting up to the column's range with quota still reserved used to succeed; the
    # cancel that returns the reservation then overflowed the balance (a 500) and the task
    # could never settle.
    user = new_user(1)
    task = new_id()
    reserve(user, task, 1)
    with pytest.raises(AppError) as caught:
        grant(user, QUOTA_MAX, kind="admin", reason="everything")
    assert caught.value.code is ErrorCode.VALIDATION_ERROR
    assert str(QUOTA_MAX) in caught.value.message
    assert counters(user) == (0, 1)
    assert grant(user, QUOTA_MAX - 1, kind="purchase", reason="all", ref=f"o:{task}").applied
    assert cancel(task).changed
    assert counters(user) == (QUOTA_MAX, 0)


def test_a_grant_up_to_the_ceiling_grants_what_fits_once() -> None:
    user = new_user(QUOTA_MAX - 10)
    task = new_id()
    reserve(user, task, 4)  # reserved quota counts against the ceiling too
    ref = f"order:{new_id()}"
    first = grant(user, 25, kind="purchase", reason="plan", ref=ref, up_to_ceiling=True)
    assert first.applied and first.entry.balance_delta == 10
    assert counters(user) == (QUOTA_MAX - 4, 4)
    again = grant(user, 25, kind="purchase", reason="plan", ref=ref, up_to_ceiling=True)
    assert not again.applied and again.entry == first.entry
    # nothing fits: what was granted (nothing) is recorded all the same, once
    full = f"order:{new_id()}"
    none = grant(user, 3, kind="purchase", reason="plan", ref=full, up_to_ceiling=True)
    assert none.applied and none.entry.balance_delta == 0
    assert not grant(user, 3, kind="purchase", reason="plan", ref=full, up_to_ceiling=True).applied
    assert counters(user) == (QUOTA_MAX - 4, 4)
    # the ref of a clamped grant is still refused for other terms, or without the flag
    for other in (
        {"amount": 9, "up_to_ceiling": True},  # less than what was granted
        {"amount": 25, "reason": "another plan", "up_to_ceiling": True},
        {"amount": 25},
    ):
        terms: dict[str, Any] = {"kind": "purchase", "reason": "plan", **other}
        with pytest.raises(AppError) as caught:
            grant(user, ref=ref, **terms)
        assert caught.value.code is ErrorCode.IDEMPOTENCY_KEY_MISMATCH
    assert cancel(task).changed
    assert counters(user) == (QUOTA_MAX, 0)


@pytest.mark.parametrize(
    ("amount", "kind", "reason", "ref"),
    [
        (0, "admin", "nothing", None),
        (-1, "purchase", "refund", None),
        (-1, "signup", "oops", None),
        (1, "gift", "unknown kind", None),
        (1, "admin", "", None),
        (1, "admin", "x" * 201, None),
        (1, "admin", "ok", ""),
        (1, "admin", "ok", "r" * 65),
    ],
    ids=[
        "zero",
        "negative-purchase",
        "negative-signup",
        "kind",
        "no-reason",
        "long-reason",
        "empty-ref",
        "long-ref",
    ],
)
def test_grant_refuses_bad_arguments(amount: int, kind: Any, reason: str, ref: str | None) -> None:
    user = new_user(3)
    with pytest.raises(AppError) as caught:
        grant(user, amount, kind=kind, reason=reason, ref=ref)
    assert caught.value.code is ErrorCode.VALIDATION_ERROR
    assert counters(user) == (3, 0)


def test_a_grant_to_an_unknown_user_is_404() -> None:
    with pytest.raises(AppError) as caught:
        grant(new_id(), 1, kind="admin", reason="who")
    assert caught.value.code is ErrorCode.NOT_FOUND


def test_signup_quota_is_granted_through_the_ledger(monkeypatch: pytest.MonkeyPatch) -> None:
    from app.config import get_settings
    from app.identity import users as identity_users

    monkeypatch.setenv("SIGNUP_QUOTA", "7")
    get_settings.cache_clear()
    try:
        with transaction() as conn:
            row = identity_users.create(conn, phone=f"+86138{secrets.randbelow(10**8):08d}")
    finally:
        monkeypatch.delenv("SIGNUP_QUOTA")
        get_settings.cache_clear()

    assert counters(row["id"]) == (7, 0)
    assert [(e.kind, e.ref) for e in entries(row["id"])] == [("signup", f"signup:{row['id']}")]


def test_refs_that_differ_only_in_case_are_different_grants() -> None:
    user_id = new_user()
    key = secrets.token_hex(4)
    first = grant(user_id, 10, kind="admin", reason="r", ref=f"admin:Key-{key.upper()}")
    second = grant(user_id, 10, kind="admin", reason="r", ref=f"admin:key-{key.lower()}")
    assert first.applied and second.applied
    with transaction() as conn:
        balance = conn.execute(select(users.c.quota_balance).where(users.c.id == user_id)).scalar()
    assert balance == 20
