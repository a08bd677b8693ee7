"""The ledger invariant check finds each way the ledger can fail to explain the quota.

Each test breaks the data inside a transaction, checks, and rolls back, so the invariant
asserted after every test still holds."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import delete, insert, update
from sqlalchemy.engine import Connection

from app.clock import utcnow
from app.db.engine import get_engine
from app.db.tables import quota_ledger, quota_transactions, users
from app.ids import new_id
from app.quota import cancel, confirm, grant, reserve
from app.quota.ledger import Discrepancy, discrepancies
from tests.support.quota import assert_ledger_consistent, new_user


@contextmanager
def rolled_back() -> Iterator[Connection]:
    with get_engine().connect() as conn:
        tx = conn.begin()
        try:
            yield conn
        finally:
            tx.rollback()


def entry(conn: Connection, user_id: str, kind: str, db: int, dr: int, **extra: Any) -> None:
    values: dict[str, Any] = {
        "id": new_id(),
        "user_id": user_id,
        "kind": kind,
        "balance_delta": db,
        "reserved_delta": dr,
        "balance_after": 0,
        "reserved_after": 0,
        "created_at": utcnow() - timedelta(days=1),  # never the newest entry
    }
    values.update(extra)
    conn.execute(insert(quota_ledger).values(**values))


@pytest.fixture
def history() -> dict[str, str]:
    """A user with every kind of entry: 20 granted, one task confirmed, one cancelled,
    one still reserved (cost 3 each): balance 14, reserved 3."""
    user = new_user(20)
    done, undone, open_ = new_id(), new_id(), new_id()
    for task in (done, undone, open_):
        reserve(user, task, 3)
    confirm(done)
    cancel(undone)
    return {"user": user, "done": done, "undone": undone, "open": open_}


def problems(found: list[Discrepancy]) -> set[str]:
    return {item.problem for item in found}


def test_a_consistent_history_has_no_discrepancies(history: dict[str, str]) -> None:
    with rolled_back() as conn:
        assert discrepancies(conn, [history["user"]]) == []
        assert discrepancies(conn) == []
        assert discrepancies(conn, []) == []


BREAKS: dict[str, tuple[Callable[[Connection, dict[str, str]], None], set[str]]] = {
    "balance-set-directly": (
        lambda conn, h: conn.execute(
            update(users).where(users.c.id == h["user"]).values(quota_balance=99)
        ),
        {
            "ledger deltas do not add up to (balance, reserved)",
            "newest entry's (balance_after, reserved_after) is not the counters",
        },
    ),
    "negative-balance": (
        lambda conn, h: conn.execute(
            update(users).where(users.c.id == h["user"]).values(quota_balance=-1)
        ),
        {
            "negative counter",
            "ledger deltas do not add up to (balance, reserved)",
            "newest entry's (balance_after, reserved_after) is not the counters",
        },
    ),
    "entry-below-zero": (
        lambda conn, h: (
            entry(conn, h["user"], "admin", 5, 0, balance_after=-5),
            entry(conn, h["user"], "admin", -5, 0),
        ),
        {"an entry left a counter below zero"},
    ),
    "confirm-entry-lost": (
        lambda conn, h: conn.execute(
            delete(quota_ledger).where(
                quota_ledger.c.task_id == h["done"], quota_ledger.c.kind == "confirm"
            )
        ),
        {
            "ledger deltas do not add up to (balance, reserved)",
            "ledger entries do not match phase confirmed",
        },
    ),
    "phase-flipped-without-entry": (
        lambda conn, h: conn.execute(
            update(quota_transactions)
            .where(quota_transactions.c.task_id == h["open"])
            .values(phase="confirmed")
        ),
        {
            "ledger entries do not match phase confirmed",
            "reserved is not the sum of the open reservations",
        },
    ),
    "second-reserve-entry": (
        lambda conn, h: (
            entry(conn, h["user"], "reserve", -3, 3, task_id=h["open"]),
            entry(conn, h["user"], "admin", 3, -3),
        ),
        {"more than one ledger entry of a kind"},
    ),
    "entry-of-another-user": (
        lambda conn, h: conn.execute(
            update(quota_ledger)
            .where(quota_ledger.c.task_id == h["undone"], quota_ledger.c.kind == "cancel")
            .values(user_id=h["other"])
        ),
        {
            "ledger entries of another user",
            # for both users: the entry moved from one to the other
            "ledger deltas do not add up to (balance, reserved)",
            "newest entry's (balance_after, reserved_after) is not the counters",
        },
    ),
    "unknown-phase": (
        lambda conn, h: conn.execute(
            update(quota_transactions)
            .where(quota_transactions.c.task_id == h["undone"])
            .values(phase="refunded")
        ),
        {"unknown phase"},
    ),
    "cancelled-without-entries-not-a-tombstone": (
        lambda conn, h: conn.execute(
            delete(quota_ledger).where(quota_ledger.c.task_id == h["undone"])
        ),
        {
            "cancelled without a reservation but not a tombstone",
            # the cancel was the newest entry
            "newest entry's (balance_after, reserved_after) is not the counters",
        },
    ),
    "saga-entry-without-saga-row": (
        lambda conn, h: (
            entry(conn, h["user"], "reserve", 0, 0, task_id=new_id()),
            entry(conn, h["user"], "confirm", 0, 0),
        ),
        {"reserve entry without a saga row", "confirm entry without a saga row"},
    ),
    "grant-naming-a-task": (
        lambda conn, h: entry(conn, h["user"], "purchase", 0, 0, task_id=h["open"]),
        {"a grant names a task"},
    ),
}


@pytest.mark.parametrize("name", list(BREAKS))
def test_each_break_is_found(name: str, history: dict[str, str]) -> None:
    breaker, expected = BREAKS[name]
    other = new_user()
    with rolled_back() as conn:
        breaker(conn, {**history, "other": other})
        found = discrepancies(conn, [history["user"], other])
    assert problems(found) == expected, [str(item) for item in found]
    assert all(str(item).startswith("user ") for item in found)


def test_entries_of_a_user_that_does_not_exist_are_found_when_checking_everyone() -> None:
    ghost = new_id()
    with rolled_back() as conn:
        entry(conn, ghost, "admin", 5, 0, balance_after=5)
        named = discrepancies(conn, [ghost])
        found = discrepancies(conn)
    assert [(item.user_id, item.problem) for item in found] == [
        (ghost, "ledger entries of an unknown user")
    ]
    assert named == found


def test_a_tombstone_is_consistent_and_a_broken_one_is_not() -> None:
    task = new_id()
    cancel(task)
    with rolled_back() as conn:
        assert discrepancies(conn) == []
        conn.execute(
            update(quota_transactions).where(quota_transactions.c.task_id == task).values(amount=2)
        )
        found = discrepancies(conn)
    assert problems(found) == {"cancelled without a reservation but not a tombstone"}


def test_the_test_assertion_lists_what_is_wrong() -> None:
    user = new_user()
    grant(user, 5, kind="admin", reason="gift")
    with get_engine().begin() as conn:
        conn.execute(update(users).where(users.c.id == user).values(quota_balance=6))
    try:
        with pytest.raises(AssertionError, match="ledger deltas do not add up"):
            assert_ledger_consistent([user])
    finally:
        with get_engine().begin() as conn:
            conn.execute(update(users).where(users.c.id == user).values(quota_balance=5))
    assert_ledger_consistent([user])
