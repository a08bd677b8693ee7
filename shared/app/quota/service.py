"""The quota saga (reserve, then confirm or cancel, once per task) and quota grants.

A user's quota lives in two counters on `users`: `quota_balance` (spendable) and
`quota_reserved` (held by running tasks). Every change to them is one transaction that also
appends a `quota_ledger` entry with the deltas and the counters after it, so the ledger
explains the counters exactly (checked by `app.quota.ledger.discrepancies`).

The saga, one `quota_transactions` row per task:

- `reserve`: balance -> reserved; saga row `reserved`; ledger `reserve`. Not enough balance
  is `402 QUOTA_INSUFFICIENT` and changes nothing.
- `confirm`: the task succeeded; the amount leaves reserved; saga `confirmed`; ledger
  `confirm`.
- `cancel`: the task failed or was cancelled; reserved -> balance; saga `cancelled`; ledger
  `cancel`. A cancel that finds no saga row writes a tombstone (`cancelled`, amount 0, no
  ledger entry), so a reserve arriving late for that task is refused instead of charging for
  a task that will never run.

`reserved` only ever moves to `confirmed` or `cancelled`, by a conditional UPDATE (`WHERE
phase='reserved'`): of any number of concurrent or redelivered confirm/cancel calls for one
task exactly one moves quota, the rest are no-ops that report the phase. Confirm after
cancel and cancel after confirm change nothing and are logged as warnings.

Locking: each verb locks the user row (`SELECT ... FOR UPDATE`) before it writes the saga
row, always in that order, so calls for one user serialize. One path cannot: a cancel that
finds no saga row and whose tombstone insert meets a reserve's row holds that row when it asks
for the user's, so a settle of the same task at that moment deadlocks with it and the server
rolls one back whole (a caller runs its unit again, as `app.tasks.lifecycle` does).
Saga ledger entries carry `ref = saga:<kind>:<task_id>`; the unique index on `ref` refuses a
second entry for the same step even if the logic above were ever wrong.

With `tx=` a verb runs inside the caller's transaction (task creation reserves and inserts
the task atomically) and never commits or rolls back itself: the caller's commit publishes
the change, and any exception out of a verb means the caller must roll back. The user's
cached profile (`app.profiles`) is dropped, and the verb's outcome counted
(`quota_saga_total`, `quota_grants_total`), after the commit, never after a rollback.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from app import profiles
from app.audit import Actor, trail
from app.clock import utcnow
from app.db.tables import quota_ledger
from app.db.transaction import Transaction, transaction
from app.errors import AppError, ErrorCode
from app.ids import new_id
from app.observability import logging as applog
from app.observability.metrics import QUOTA_GRANTS, QUOTA_SAGA
from app.quota import rows
from app.quota.rows import LedgerEntry, Phase

log = applog.get_logger("app.quota")

GrantKind = Literal["signup", "purchase", "admin"]
GRANT_KINDS: tuple[str, ...] = ("signup", "purchase", "admin")
SAGA_KINDS: tuple[str, ...] = ("reserve", "confirm", "cancel")
# A tombstone belongs to no user: the cancel that wrote it did not know whose task it was.
TOMBSTONE_USER = ""
# users.quota_* are signed 32-bit INT columns.
QUOTA_MAX = 2**31 - 1
_ID_MAX = 32
_REF_MAX = 64
_REASON_MAX = 200


@dataclass(frozen=True)
class Reservation:
    task_id: str
    user_id: str
    amount: int
    phase: Phase
    created: bool  # this call made the reservation (False: it already existed)


@dataclass(frozen=True)
class Settlement:
    task_id: str
    phase: Phase | None  # None: confirm found no saga row for the task
    changed: bool  # this call changed the saga row (or wrote the tombstone)
    amount: int  # quota this call moved
    # confirmed | cancelled (this call settled it), tombstone, repeat (already in the phase
    # asked for), conflict (already in the other phase), missing (confirm of no row)
    outcome: str


@dataclass(frozen=True)
class Grant:
    entry: LedgerEntry
    applied: bool  # False: an entry with this ref already existed and is returned as is


class ReservationRefused(AppError):
    """A reserve for a task whose saga row forbids charging it: the task was cancelled (or
    tombstoned), or the row belongs to another user or amount."""

    def __init__(self, task_id: str, phase: Phase, code: ErrorCode, message: str) -> None:
        super().__init__(code, message)
        self.task_id = task_id
        self.phase = phase


def reserve(
    user_id: str, task_id: str, amount: int, *, tx: Transaction | None = None
) -> Reservation:
    """Move `amount` from the user's balance to reserved for `task_id`.

    Idempotent per task: a repeat with the same user and amount returns the existing
    reservation (`created=False`, phase `reserved` or `confirmed`) and charges nothing.
    Raises `AppError(QUOTA_INSUFFICIENT)` when the balance is short, `ReservationRefused`
    when the task was cancelled or its row names another user or amount, and
    `AppError(NOT_FOUND)` for an unknown user; none of them changes anything.
    """
    _check_id("task_id", task_id)
    if amount < 0:
        raise AppError(ErrorCode.VALIDATION_ERROR, "A reservation cannot be negative.")
    try:
        with _unit(tx) as db:
            reservation = _reserve(db, user_id, task_id, amount)
            outcome = "reserved" if reservation.created else "repeat"
            db.after_commit(QUOTA_SAGA.labels(verb="reserve", outcome=outcome).inc, task_id=task_id)
    except AppError as error:
        QUOTA_SAGA.labels(verb="reserve", outcome=_failed(error)).inc()
        raise
    return reservation


def confirm(task_id: str, *, tx: Transaction | None = None) -> Settlement:
    """The task succeeded: its reserved amount is spent. Idempotent; see the module doc."""
    return _settle(task_id, "confirmed", tx)


def cancel(task_id: str, *, tx: Transaction | None = None) -> Settlement:
    """The task failed or was cancelled: its reserved amount goes back to the balance.

    Idempotent; with no reservation for the task it writes the tombstone that refuses a
    late reserve."""
    return _settle(task_id, "cancelled", tx)


def grant(
    user_id: str,
    amount: int,
    *,
    kind: GrantKind,
    reason: str,
    ref: str | None = None,
    up_to_ceiling: bool = False,
    tx: Transaction | None = None,
    actor: Actor | None = None,
) -> Grant:
    """Add `amount` to the user's balance (`admin` may also take away).

    `ref` names what paid for it (an order, an admin request's Idempotency-Key): a grant whose
    ref is already in the ledger is a no-op returning that entry, so a duplicate payment
    notification never grants twice; the same ref with another user, kind, amount or reason
    is `409 IDEMPOTENCY_KEY_MISMATCH`. A balance that would go below zero, or past the
    column's range together with what is reserved (QUOTA_MAX), is `422 VALIDATION_ERROR`.

    With `up_to_ceiling` a grant past QUOTA_MAX is not refused: it grants what fits (zero
    when nothing does) and records that, so the entry's `balance_delta` is what was granted
    (a paid order must be delivered; its caller tells an operator about the rest). A repeat
    asking for at least what that entry granted returns it (the entry keeps what was
    granted, not what was asked).

    A grant an admin makes (`actor`) is recorded in the same transaction (app.audit), naming
    its ledger entry; a repeat, which changes nothing, records nothing.
    """
    _check_grant(amount, kind, reason, ref)
    try:
        with _unit(tx) as db:
            result = _grant(db, user_id, amount, kind, reason, ref, up_to_ceiling)
            if actor is not None and result.applied:
                trail.record(db, actor, "quota.grant", user_id, _granted(result.entry))
            outcome = "applied" if result.applied else "repeat"
            db.after_commit(QUOTA_GRANTS.labels(kind=kind, outcome=outcome).inc, user_id=user_id)
    except AppError as error:
        QUOTA_GRANTS.labels(kind=kind, outcome=_failed(error)).inc()
        raise
    return result


def _failed(error: AppError) -> str:
    """A verb's outcome when it raised: refused by the rules, or the database unavailable
    (a lost connection, a COMMIT in doubt: it may have been applied, and is tried again)."""
    if error.code is ErrorCode.QUOTA_INSUFFICIENT:
        return "insufficient"
    return "unavailable" if error.code is ErrorCode.SERVICE_UNAVAILABLE else "refused"


# -- the verbs, inside one transaction ---------------------------------------------------


def _reserve(db: Transaction, user_id: str, task_id: str, amount: int) -> Reservation:
    balance, reserved = rows.lock_user(db, user_id)
    now = utcnow()
    # The saga row goes in before the counters change, so a duplicate (a repeat, or a
    # tombstone) is found before anything in the caller's transaction has been touched.
    if balance >= amount and rows.insert_saga(
        db,
        id=new_id(),
        task_id=task_id,
        user_id=user_id,
        amount=amount,
        phase="reserved",
        created_at=now,
        updated_at=now,
    ):
        rows.set_counters(db, user_id, balance - amount, reserved + amount, now)
        rows.append(
            db,
            user_id=user_id,
            kind="reserve",
            balance_delta=-amount,
            reserved_delta=amount,
            balance_after=balance - amount,
            reserved_after=reserved + amount,
            task_id=task_id,
            ref=_saga_ref("reserve", task_id),
            now=now,
        )
        db.after_commit(profiles.forgetter(user_id))
        return Reservation(task_id, user_id, amount, "reserved", created=True)
    existing = rows.saga_row(db, task_id)
    if existing is None:
        raise AppError(
            ErrorCode.QUOTA_INSUFFICIENT,
            f"This task costs {amount} quota; {balance} is available.",
            details={"required": amount, "available": balance},
        )
    return _existing_reservation(existing, user_id, task_id, amount)


def _existing_reservation(
    row: rows.SagaRow, user_id: str, task_id: str, amount: int
) -> Reservation:
    phase: Phase = row.phase
    if phase == "cancelled":
        applog.log_fields(
            log,
            logging.WARNING,
            "quota reserve refused: task already cancelled",
            task_id=task_id,
            user_id=user_id,
            tombstone=row.user_id == TOMBSTONE_USER,
        )
        raise ReservationRefused(
            task_id,
            phase,
            ErrorCode.TASK_NOT_CANCELLABLE,
            "This task was already cancelled; it cannot reserve quota.",
        )
    if row.user_id != user_id or int(row.amount) != amount:
        applog.log_fields(
            log,
            logging.WARNING,
            "quota reserve refused: task reserved with other terms",
            task_id=task_id,
            user_id=user_id,
            amount=amount,
            phase=phase,
        )
        raise ReservationRefused(
            task_id,
            phase,
            ErrorCode.IDEMPOTENCY_KEY_MISMATCH,
            "This task already holds a reservation with other terms.",
        )
    return Reservation(task_id, user_id, amount, phase, created=False)


def _settle(task_id: str, target: Phase, tx: Transaction | None) -> Settlement:
    _check_id("task_id", task_id)
    verb = "confirm" if target == "confirmed" else "cancel"
    with _unit(tx) as db:
        result = _settle_in(db, task_id, target)
        db.after_commit(QUOTA_SAGA.labels(verb=verb, outcome=result.outcome).inc, task_id=task_id)
    return result


def _settle_in(db: Transaction, task_id: str, target: Phase) -> Settlement:
    row = rows.saga_row(db, task_id)
    if row is None:
        if target == "confirmed":
            applog.log_fields(
                log, logging.WARNING, "quota confirm found no reservation", task_id=task_id
            )
            return Settlement(task_id, None, changed=False, amount=0, outcome="missing")
        now = utcnow()
        if rows.insert_saga(
            db,
            id=new_id(),
            task_id=task_id,
            user_id=TOMBSTONE_USER,
            amount=0,
            phase="cancelled",
            created_at=now,
            updated_at=now,
        ):
            applog.log_fields(
                log,
                logging.WARNING,
                "quota cancel found no reservation; tombstone recorded",
                task_id=task_id,
            )
            return Settlement(task_id, "cancelled", changed=True, amount=0, outcome="tombstone")
        # A reserve committed between the read and the insert: settle that reservation.
        row = rows.saga_row(db, task_id)
        if row is None:  # pragma: no cover - saga rows are never deleted
            raise RuntimeError(f"saga row of task {task_id} vanished")
    if row.phase != "reserved":
        return _no_change(task_id, row.phase, target)
    user_id, amount = str(row.user_id), int(row.amount)
    balance, reserved = rows.lock_user(db, user_id)
    now = utcnow()
    moved = rows.SETTLE.run(db, {"settled_task": task_id, "target": target, "now": now}).rowcount
    if moved != 1:
        # Another call settled it while this one waited for the user lock.
        current = rows.saga_row(db, task_id)
        return _no_change(task_id, current.phase if current else None, target)
    if target == "confirmed":
        kind, balance_delta = "confirm", 0
    else:
        kind, balance_delta = "cancel", amount
    rows.set_counters(db, user_id, balance + balance_delta, reserved - amount, now)
    rows.append(
        db,
        user_id=user_id,
        kind=kind,
        balance_delta=balance_delta,
        reserved_delta=-amount,
        balance_after=balance + balance_delta,
        reserved_after=reserved - amount,
        task_id=task_id,
        ref=_saga_ref(kind, task_id),
        now=now,
    )
    db.after_commit(profiles.forgetter(user_id))
    return Settlement(task_id, target, changed=True, amount=amount, outcome=target)


def _no_change(task_id: str, phase: Phase | None, target: Phase) -> Settlement:
    if phase == target:
        applog.log_fields(log, logging.INFO, "quota settle repeated", task_id=task_id, phase=phase)
        return Settlement(task_id, phase, changed=False, amount=0, outcome="repeat")
    verb = "confirm" if target == "confirmed" else "cancel"
    applog.log_fields(
        log,
        logging.WARNING,
        f"quota {verb} ignored: reservation already {phase}",
        task_id=task_id,
        phase=phase,
    )
    return Settlement(task_id, phase, changed=False, amount=0, outcome="conflict")


def _grant(
    db: Transaction,
    user_id: str,
    amount: int,
    kind: str,
    reason: str,
    ref: str | None,
    up_to_ceiling: bool,
) -> Grant:
    balance, reserved = rows.lock_user(db, user_id)
    if ref is not None:
        found = db.execute(select(quota_ledger).where(quota_ledger.c.ref == ref)).first()
        if found is not None:
            entry = rows.entry(found)
            return Grant(
                _same_grant(entry, user_id, amount, kind, reason, up_to_ceiling), applied=False
            )
    if up_to_ceiling:
        amount = min(amount, max(0, QUOTA_MAX - balance - reserved))
    after = balance + amount
    if after < 0:
        raise _amount_refused(
            f"This would take the balance below zero: it is {balance}, the change is {amount}.",
            "would take the balance below zero",
        )
    # Reserved quota comes back to the balance on cancel: the two together must fit the
    # column, or that cancel could not be written and the task could never settle.
    if after + reserved > QUOTA_MAX:
        raise _amount_refused(
            f"The balance and the reserved quota together cannot exceed {QUOTA_MAX}: they "
            f"are {balance} and {reserved}, the change is {amount}.",
            f"would take the balance and the reserved quota past {QUOTA_MAX}",
        )
    now = utcnow()
    rows.set_counters(db, user_id, after, reserved, now)
    try:
        entry = rows.append(
            db,
            user_id=user_id,
            kind=kind,
            balance_delta=amount,
            reserved_delta=0,
            balance_after=after,
            reserved_after=reserved,
            task_id=None,
            ref=ref,
            reason=reason,
            now=now,
        )
    except IntegrityError as error:
        # The same ref was applied for another user meanwhile (that user's lock is not ours).
        raise _ref_mismatch() from error
    db.after_commit(profiles.forgetter(user_id))
    return Grant(entry, applied=True)


def _granted(entry: LedgerEntry) -> dict[str, object]:
    return {
        "delta": entry.balance_delta,
        "balance_after": entry.balance_after,
        "reason": entry.reason,
        "ledger_id": entry.id,
    }


def _same_grant(
    entry: LedgerEntry, user_id: str, amount: int, kind: str, reason: str, up_to_ceiling: bool
) -> LedgerEntry:
    # A grant made up to the ceiling recorded what fitted, at most what was asked.
    granted = entry.balance_delta
    same_amount = granted == amount or (up_to_ceiling and 0 <= granted < amount)
    if (entry.user_id, entry.kind, entry.reason) != (user_id, kind, reason) or not same_amount:
        raise _ref_mismatch()
    return entry


def _amount_refused(message: str, why: str) -> AppError:
    """A grant's amount the balance cannot take: the one a client sends is an admin's
    `delta` (POST /admin/users/{id}/quota), named as every 422 names its field."""
    return AppError(
        ErrorCode.VALIDATION_ERROR, message, details=[{"loc": ["body", "delta"], "msg": why}]
    )


def _ref_mismatch() -> AppError:
    return AppError(
        ErrorCode.IDEMPOTENCY_KEY_MISMATCH,
        "This key was already used for a different quota change.",
    )


# -- statements --------------------------------------------------------------------------


@contextmanager
def _unit(tx: Transaction | None) -> Iterator[Transaction]:
    """The caller's transaction when given, else one of our own."""
    if tx is not None:
        yield tx
        return
    with transaction() as own:
        yield own


def _saga_ref(kind: str, task_id: str) -> str:
    return f"saga:{kind}:{task_id}"


def _check_id(name: str, value: str) -> None:
    # INSERT IGNORE would truncate an over-long id with a warning instead of failing.
    if not value or len(value) > _ID_MAX:
        raise AppError(ErrorCode.VALIDATION_ERROR, f"{name} must be 1-{_ID_MAX} characters.")


def _check_grant(amount: int, kind: str, reason: str, ref: str | None) -> None:
    if kind not in GRANT_KINDS:
        raise AppError(ErrorCode.VALIDATION_ERROR, f"Unknown grant kind {kind!r}.")
    if amount == 0:
        raise AppError(ErrorCode.VALIDATION_ERROR, "A quota change cannot be zero.")
    if amount < 0 and kind != "admin":
        raise AppError(ErrorCode.VALIDATION_ERROR, "Only an admin adjustment can be negative.")
    if not reason or len(reason) > _REASON_MAX:
        raise AppError(
            ErrorCode.VALIDATION_ERROR, f"The reason must be 1-{_REASON_MAX} characters."
        )
    if ref is not None and not 0 < len(ref) <= _REF_MAX:
        raise AppError(
            ErrorCode.VALIDATION_ERROR, f"The reference must be 1-{_REF_MAX} characters."
        )
