"""Quota test support: users with a funded balance, their counters, and the ledger invariant
as an assertion. Quota tests call `assert_ledger_consistent()` after every test."""

from __future__ import annotations

from collections.abc import Collection

from sqlalchemy import insert, select

from app.clock import utcnow
from app.db.tables import users
from app.db.transaction import transaction
from app.ids import new_id
from app.quota import grant
from app.quota.ledger import discrepancies


def new_user(quota: int = 0, *, role: str = "user") -> str:
    """A user row inserted directly; `quota` is granted through the ledger (kind admin)."""
    user_id, now = new_id(), utcnow()
    with transaction() as conn:
        conn.execute(insert(users).values(id=user_id, role=role, created_at=now, updated_at=now))
    if quota:
        grant(user_id, quota, kind="admin", reason="test funding")
    return user_id


def counters(user_id: str) -> tuple[int, int]:
    """The user's (quota_balance, quota_reserved) as stored."""
    with transaction() as conn:
        row = conn.execute(
            select(users.c.quota_balance, users.c.quota_reserved).where(users.c.id == user_id)
        ).one()
    return row.quota_balance, row.quota_reserved


def assert_ledger_consistent(user_ids: Collection[str] | None = None) -> None:
    """Fails listing every discrepancy between the ledger, the counters and the saga rows.

    Reads one snapshot (REPEATABLE READ), so writers still running elsewhere cannot make the
    counters and the ledger disagree in the middle of the check."""
    with transaction(isolation="REPEATABLE READ") as tx:
        found = discrepancies(tx, user_ids)
    assert not found, "quota ledger inconsistent:\n" + "\n".join(str(item) for item in found)
