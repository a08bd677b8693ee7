"""The rows the quota saga reads and writes, through statements compiled once and run on the
driver's cursor (`app.db.prepared`): the user's counters (locked), the saga row of a task,
the ledger. Every call runs inside the caller's transaction; nothing here decides anything.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import Table, bindparam, insert, select, update
from sqlalchemy.engine import Row
from sqlalchemy.sql.dml import Insert

from app.db.prepared import Prepared
from app.db.statements import ignoring_duplicates
from app.db.tables import quota_ledger, quota_transactions, users
from app.db.transaction import Transaction
from app.db.types import UtcDateTime
from app.errors import AppError, ErrorCode
from app.ids import is_id, new_id

Phase = Literal["reserved", "confirmed", "cancelled"]


@dataclass(frozen=True)
class LedgerEntry:
    id: str
    user_id: str
    kind: str
    balance_delta: int
    reserved_delta: int
    balance_after: int
    reserved_after: int
    task_id: str | None
    ref: str | None
    reason: str | None
    created_at: datetime


# The saga's statements run per task under the user's row lock: compiled once and run on
# the driver's cursor (app.db.prepared), each value bound by name.
def _insert_into(table: Table) -> Insert:
    """INSERT of every column the server does not fill, each bound by its name."""
    return insert(table).values(
        {c.name: bindparam(c.name, type_=c.type) for c in table.columns if c.server_default is None}
    )


_LOCK_USER = Prepared(
    select(users.c.quota_balance, users.c.quota_reserved)
    .where(users.c.id == bindparam("user_id"))
    .with_for_update()
)
_SAGA_ROW = Prepared(
    select(
        quota_transactions.c.user_id, quota_transactions.c.amount, quota_transactions.c.phase
    ).where(quota_transactions.c.task_id == bindparam("task_id"))
)
_SET_COUNTERS = Prepared(
    update(users)
    .where(users.c.id == bindparam("user_id"))
    .values(
        quota_balance=bindparam("balance"),
        quota_reserved=bindparam("reserved"),
        updated_at=bindparam("now", type_=UtcDateTime()),
    )
)
SETTLE = Prepared(
    update(quota_transactions)
    .where(
        quota_transactions.c.task_id == bindparam("settled_task"),
        quota_transactions.c.phase == "reserved",
    )
    .values(phase=bindparam("target"), updated_at=bindparam("now", type_=UtcDateTime()))
)
_APPEND = Prepared(_insert_into(quota_ledger))
# INSERT IGNORE: a duplicate task_id (a repeat or a tombstone) is skipped, not an error.
_SAGA_INSERT_IGNORE = Prepared(ignoring_duplicates(_insert_into(quota_transactions)))


@dataclass(frozen=True)
class SagaRow:
    user_id: str
    amount: int
    phase: Phase


def lock_user(db: Transaction, user_id: str) -> tuple[int, int]:
    # Only an id of the shape ids are made in: the database ignores trailing spaces when it
    # compares, the cached profile's key does not, and would go on showing the old counters.
    if not is_id(user_id):
        raise AppError(ErrorCode.NOT_FOUND, "User not found.")
    row = _LOCK_USER.run(db, {"user_id": user_id}).first()
    if row is None:
        raise AppError(ErrorCode.NOT_FOUND, "User not found.")
    return int(row[0]), int(row[1])


def saga_row(db: Transaction, task_id: str) -> SagaRow | None:
    row = _SAGA_ROW.run(db, {"task_id": task_id}).first()
    return None if row is None else SagaRow(str(row[0]), int(row[1]), row[2])


def insert_saga(db: Transaction, **values: Any) -> bool:
    """Insert the saga row unless the task has one; True when it went in. Waits for a
    conflicting insert of another open transaction to commit or roll back first."""
    return _SAGA_INSERT_IGNORE.run(db, values).rowcount == 1


def set_counters(db: Transaction, user_id: str, balance: int, reserved: int, now: datetime) -> None:
    _SET_COUNTERS.run(
        db, {"user_id": user_id, "balance": balance, "reserved": reserved, "now": now}
    )


def append(
    db: Transaction,
    *,
    user_id: str,
    kind: str,
    balance_delta: int,
    reserved_delta: int,
    balance_after: int,
    reserved_after: int,
    task_id: str | None,
    ref: str | None,
    now: datetime,
    reason: str | None = None,
) -> LedgerEntry:
    entry = LedgerEntry(
        id=new_id(),
        user_id=user_id,
        kind=kind,
        balance_delta=balance_delta,
        reserved_delta=reserved_delta,
        balance_after=balance_after,
        reserved_after=reserved_after,
        task_id=task_id,
        ref=ref,
        reason=reason,
        created_at=now,
    )
    _APPEND.run(db, entry.__dict__)  # the columns, without asdict's deep copy
    return entry


def entry(row: Row[Any]) -> LedgerEntry:
    return LedgerEntry(**{name: getattr(row, name) for name in LedgerEntry.__dataclass_fields__})
