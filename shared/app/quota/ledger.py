"""The ledger invariant: `quota_ledger` explains every user's quota counters and every saga
row exactly.

For each user: the sums of the ledger's balance and reserved deltas equal
`users.quota_balance` and `users.quota_reserved`, the newest entry's `*_after` values equal
them too, no entry ever left a counter below zero, and the amounts of the user's saga rows
still `reserved` add up to `quota_reserved`.

For each saga row (see app.quota.service): `reserved` has exactly a `reserve` entry;
`confirmed` a `reserve` and a `confirm`; `cancelled` a `reserve` and a `cancel`, or nothing
at all when it is a tombstone (amount 0); every entry's deltas match the row's amount and
user. A saga entry without a saga row is a discrepancy too.

Read-only. Run it inside one snapshot (REPEATABLE READ) when other writers are active, or
it may compare counters and ledger taken at different moments.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, or_, select

from app.db.tables import quota_ledger, quota_transactions, users
from app.db.transaction import Transaction
from app.quota.service import GRANT_KINDS, SAGA_KINDS, TOMBSTONE_USER

# What each saga phase must have in the ledger: kind -> (balance delta, reserved delta) per
# unit of the row's amount.
_SAGA_SHAPES: dict[str, tuple[dict[str, tuple[int, int]], ...]] = {
    "reserved": ({"reserve": (-1, 1)},),
    "confirmed": ({"reserve": (-1, 1), "confirm": (0, -1)},),
    "cancelled": ({"reserve": (-1, 1), "cancel": (1, -1)}, {}),
}


@dataclass(frozen=True)
class Discrepancy:
    user_id: str
    problem: str
    task_id: str | None = None
    expected: Any = None
    actual: Any = None

    def __str__(self) -> str:
        where = f"user {self.user_id!r}" + (f" task {self.task_id!r}" if self.task_id else "")
        return f"{where}: {self.problem} (expected {self.expected!r}, found {self.actual!r})"


def discrepancies(conn: Transaction, user_ids: Collection[str] | None = None) -> list[Discrepancy]:
    """Every way the ledger fails to explain the counters and the saga rows; [] when none.

    `user_ids=None` checks every user, every saga row (tombstones included) and every ledger
    entry; otherwise only those of the given users.
    """
    only = None if user_ids is None else list(user_ids)
    if only is not None and not only:
        return []
    found: list[Discrepancy] = []
    counters = _counters(conn, only)
    found += _check_sums(conn, only, counters)
    found += _check_last_entries(conn, only, counters)
    found += _check_saga(conn, only, counters)
    return found


def _counters(conn: Transaction, only: list[str] | None) -> dict[str, tuple[int, int]]:
    query = select(users.c.id, users.c.quota_balance, users.c.quota_reserved)
    if only is not None:
        query = query.where(users.c.id.in_(only))
    return {
        row.id: (int(row.quota_balance), int(row.quota_reserved)) for row in conn.execute(query)
    }


def _check_sums(
    conn: Transaction, only: list[str] | None, counters: dict[str, tuple[int, int]]
) -> list[Discrepancy]:
    led = quota_ledger.c
    query = select(
        led.user_id,
        func.coalesce(func.sum(led.balance_delta), 0).label("balance"),
        func.coalesce(func.sum(led.reserved_delta), 0).label("reserved"),
        func.min(led.balance_after).label("min_balance"),
        func.min(led.reserved_after).label("min_reserved"),
    ).group_by(led.user_id)
    if only is not None:
        query = query.where(led.user_id.in_(only))
    sums = {row.user_id: row for row in conn.execute(query)}
    found: list[Discrepancy] = []
    for user_id in sums.keys() - counters.keys():
        found.append(
            Discrepancy(user_id, "ledger entries of an unknown user", actual="no user row")
        )
    for user_id, (balance, reserved) in counters.items():
        if balance < 0 or reserved < 0:
            found.append(
                Discrepancy(
                    user_id, "negative counter", expected=">= 0", actual=(balance, reserved)
                )
            )
        row = sums.get(user_id)
        summed = (int(row.balance), int(row.reserved)) if row is not None else (0, 0)
        if summed != (balance, reserved):
            found.append(
                Discrepancy(
                    user_id,
                    "ledger deltas do not add up to (balance, reserved)",
                    expected=(balance, reserved),
                    actual=summed,
                )
            )
        if row is not None and (int(row.min_balance) < 0 or int(row.min_reserved) < 0):
            found.append(
                Discrepancy(
                    user_id,
                    "an entry left a counter below zero",
                    expected=">= 0",
                    actual=(int(row.min_balance), int(row.min_reserved)),
                )
            )
    return found


def _check_last_entries(
    conn: Transaction, only: list[str] | None, counters: dict[str, tuple[int, int]]
) -> list[Discrepancy]:
    led = quota_ledger.c
    newest = select(led.user_id, func.max(led.created_at).label("at")).group_by(led.user_id)
    if only is not None:
        newest = newest.where(led.user_id.in_(only))
    latest = newest.subquery()
    query = select(led.user_id, led.balance_after, led.reserved_after).join_from(
        quota_ledger,
        latest,
        (latest.c.user_id == led.user_id) & (latest.c.at == led.created_at),
    )
    # Entries of one user are written under its row lock, so created_at orders them; two
    # in the same microsecond are both candidates for "newest".
    afters: dict[str, set[tuple[int, int]]] = defaultdict(set)
    for row in conn.execute(query):
        afters[row.user_id].add((int(row.balance_after), int(row.reserved_after)))
    found: list[Discrepancy] = []
    for user_id, candidates in afters.items():
        current = counters.get(user_id)
        if current is not None and current not in candidates:
            found.append(
                Discrepancy(
                    user_id,
                    "newest entry's (balance_after, reserved_after) is not the counters",
                    expected=current,
                    actual=sorted(candidates),
                )
            )
    return found


def _check_saga(
    conn: Transaction, only: list[str] | None, counters: dict[str, tuple[int, int]]
) -> list[Discrepancy]:
    t, led = quota_transactions.c, quota_ledger.c
    rows_query = select(t.task_id, t.user_id, t.amount, t.phase)
    entries_query = select(
        led.task_id, led.user_id, led.kind, led.balance_delta, led.reserved_delta
    ).where(or_(led.task_id.is_not(None), led.kind.in_(SAGA_KINDS)))
    if only is not None:
        rows_query = rows_query.where(t.user_id.in_(only))
        entries_query = entries_query.where(led.user_id.in_(only))
    rows = {row.task_id: row for row in conn.execute(rows_query)}
    entries: dict[str | None, list[Any]] = defaultdict(list)
    found: list[Discrepancy] = []
    for entry in conn.execute(entries_query):
        if entry.kind in GRANT_KINDS:
            found.append(Discrepancy(entry.user_id, "a grant names a task", task_id=entry.task_id))
            continue
        entries[entry.task_id].append(entry)

    held: dict[str, int] = defaultdict(int)
    for task_id, row in rows.items():
        if row.phase == "reserved":
            held[row.user_id] += int(row.amount)
        found += _check_saga_row(row, entries.pop(task_id, []))
    for task_id, orphans in entries.items():
        for entry in orphans:
            found.append(
                Discrepancy(
                    entry.user_id,
                    f"{entry.kind} entry without a saga row",
                    task_id=task_id,
                    actual=entry.kind,
                )
            )
    for user_id, (_, reserved) in counters.items():
        if held.get(user_id, 0) != reserved:
            found.append(
                Discrepancy(
                    user_id,
                    "reserved is not the sum of the open reservations",
                    expected=held.get(user_id, 0),
                    actual=reserved,
                )
            )
    return found


def _check_saga_row(row: Any, entries: list[Any]) -> list[Discrepancy]:
    amount = int(row.amount)
    found_shape = {
        entry.kind: (int(entry.balance_delta), int(entry.reserved_delta)) for entry in entries
    }
    problems: list[Discrepancy] = []
    if len(found_shape) != len(entries):
        problems.append(
            Discrepancy(
                row.user_id,
                "more than one ledger entry of a kind",
                task_id=row.task_id,
                actual=sorted(entry.kind for entry in entries),
            )
        )
    strangers = {entry.user_id for entry in entries} - {row.user_id}
    if strangers:
        problems.append(
            Discrepancy(
                row.user_id,
                "ledger entries of another user",
                task_id=row.task_id,
                actual=sorted(strangers),
            )
        )
    shapes = _SAGA_SHAPES.get(row.phase)
    if shapes is None:
        return [*problems, Discrepancy(row.user_id, "unknown phase", row.task_id, actual=row.phase)]
    wanted = [
        {kind: (b * amount, r * amount) for kind, (b, r) in shape.items()} for shape in shapes
    ]
    if found_shape not in wanted:
        problems.append(
            Discrepancy(
                row.user_id,
                f"ledger entries do not match phase {row.phase}",
                task_id=row.task_id,
                expected=wanted,
                actual=found_shape,
            )
        )
    if row.phase == "cancelled" and not entries and (amount != 0 or row.user_id != TOMBSTONE_USER):
        problems.append(
            Discrepancy(
                row.user_id,
                "cancelled without a reservation but not a tombstone",
                task_id=row.task_id,
                expected=(TOMBSTONE_USER, 0),
                actual=(row.user_id, amount),
            )
        )
    return problems
