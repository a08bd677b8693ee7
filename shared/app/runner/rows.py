"""The step rows (`task_steps`) and the statements that move them: claims with their leases,
give back, park, settle and dispatch.

A claim moves a row to running with a fresh `lease_until`. That value is the holder's
fencing token: every later write of the holder (counting a call, parking, settling, giving
the row back after a failure) names it, so a holder whose row was taken over or cancelled
meanwhile changes nothing. A row whose lease ran out is claimable again, which is how a
worker that died mid-call is taken over. Claiming an `http` row also takes the host slot of
its first call: with none free the row is given back in the same transaction and the answer
is `RetryLater`.

The statements every branch runs are built once and run as prepared statements
(`app.db.prepared`): building them per call costs more than the database round trip on a
busy worker, and a branch's claim and settle are the fork window's critical path.

Owns: the rows' statements and the claim types (`Claim`, `RetryLater`, `Attempts`).
Never publishes a message, makes a call or ends a task. Its statements run in the caller's
transaction; the one exception is `Attempts`, each further call's count, committed on its
own before the call is made.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import JSON, and_, bindparam, case, select, update
from sqlalchemy.sql import ColumnElement

from app.clock import utcnow
from app.db.prepared import Prepared
from app.db.tables import task_steps
from app.db.transaction import Transaction, transaction
from app.db.types import UtcDateTime
from app.pipeline.definition import HttpCall, SimCall
from app.runner import calls

STEP_TERMINAL = ("succeeded", "failed", "cancelled")
LEASE_MARGIN_S = 30.0
# The least lease a row keeps once its last call answered (`Attempts.hold`): what the worker
# may still spend then (the output kept in COS, the settle) and a margin. The claim's own
# leaves as little as 3 s + LEASE_MARGIN_S after a call of the whole timeout, less a stall
# before the call.
AFTER_CALL_LEASE_S = calls.AFTER_LAST_CALL_S + LEASE_MARGIN_S
Row = Mapping[Any, Any]

_c = task_steps.c
_NOW = bindparam("now", type_=UtcDateTime())
_THIS_ROW = and_(
    _c.task_id == bindparam("row_task"),
    _c.position == bindparam("row_position"),
    _c.branch == bindparam("row_branch"),
)
_CLAIM_PENDING = Prepared(
    update(task_steps)
    .where(
        _THIS_ROW,
        _c.status == "pending",
        _c.attempts == 0,
        # a branch runs only once its fork dispatched it: the window's guarantee
        (_c.branch < 0) | _c.dispatched_at.is_not(None),
    )
    .values(
        status="running",
        attempts=1,
        lease_until=bindparam("lease", type_=UtcDateTime()),
        started_at=_NOW,
        heartbeat_at=_NOW,
        updated_at=_NOW,
    )
)
# Gives back a row claimed from pending with its first call counted when that call is not
# made (no slot): pending and never called again, so the call it counted is not counted.
# In the claim's transaction (`_CLAIM_PENDING`), hence fenced by the claim's lease (after
# the commit, `give_back` does the same). Its updated_at moves: the row is waiting
# for a slot, with a message that keeps coming back for it, so the sweeper must not
# publish another.
_UNCLAIM = Prepared(
    update(task_steps)
    .where(
        _THIS_ROW,
        _c.status == "running",
        _c.lease_until == bindparam("lease", type_=UtcDateTime()),
    )
    .values(
        status="pending",
        attempts=0,
        lease_until=None,
        started_at=None,
        heartbeat_at=None,
        updated_at=_NOW,
    )
)
_SETTLE = Prepared(
    update(task_steps)
    .where(
        _THIS_ROW,
        _c.status == "running",
        _c.lease_until == bindparam("lease", type_=UtcDateTime()),
    )
    .values(
        status=bindparam("settled"),
        output=bindparam("output", type_=JSON(none_as_null=True)),
        error=bindparam("error", type_=JSON(none_as_null=True)),
        lease_until=None,
        finished_at=_NOW,
        updated_at=_NOW,
    )
)
_DISPATCH = Prepared(
    update(task_steps)
    .where(_THIS_ROW, _c.dispatched_at.is_(None))
    .values(dispatched_at=_NOW, updated_at=_NOW)
)
# A settled branch's result and its successor's claim in one statement: the successor,
# dispatched and taken for running, for the settling invocation to run it next. The
# settle only while the lease is still ours; the successor only while never dispatched
# (so it still has exactly one dispatcher), pending and never called. Both rows moved or
# the transaction is rolled back (the caller's part).
_SETTLED_ROW = _c.branch == bindparam("row_branch")


def _either(settled: Any, successor: Any) -> Any:
    return case((_SETTLED_ROW, settled), else_=successor)


_SETTLE_AND_CLAIM = Prepared(
    update(task_steps)
    .where(
        _c.task_id == bindparam("row_task"),
        _c.position == bindparam("row_position"),
        _c.branch.in_([bindparam("row_branch"), bindparam("next_branch")]),
        (
            _SETTLED_ROW
            & (_c.status == "running")
            & (_c.lease_until == bindparam("lease", type_=UtcDateTime()))
        )
        | (
            (_c.branch == bindparam("next_branch"))
            & (_c.status == "pending")
            & (_c.attempts == 0)
            & _c.dispatched_at.is_(None)
        ),
    )
    .values(
        status=_either(bindparam("settled"), "running"),
        output=_either(bindparam("output", type_=JSON(none_as_null=True)), _c.output),
        error=_either(bindparam("error", type_=JSON(none_as_null=True)), _c.error),
        attempts=_either(_c.attempts, 1),
        lease_until=_either(None, bindparam("next_lease", type_=UtcDateTime())),
        dispatched_at=_either(_c.dispatched_at, _NOW),
        started_at=_either(_c.started_at, _NOW),
        heartbeat_at=_either(_c.heartbeat_at, _NOW),
        finished_at=_either(_NOW, None),
        updated_at=_NOW,
    )
)


def leased(lease_until: datetime | None, now: datetime) -> bool:
    """A claim's lease on a row has not ended: its holder may still settle it, or it is
    parked until its wait ends (see `park`). A running row without one is claimable again."""
    return lease_until is not None and lease_until >= now


def step_row(
    tx: Transaction, task_id: str, position: int, branch: int = -1, *, lock: bool = False
) -> Row | None:
    query = select(task_steps).where(
        _c.task_id == task_id, _c.position == position, _c.branch == branch
    )
    return tx.execute(query.with_for_update() if lock else query).mappings().first()


def lease_s(step: HttpCall | SimCall) -> float:
    """How long a claim holds its row: the whole of the step's calls, and a margin."""
    if isinstance(step, HttpCall):
        return (step.timeout_s + 3) * (1 + step.retries) + LEASE_MARGIN_S
    return step.duration_ms / 1000 + LEASE_MARGIN_S


# -- claims --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Claim:
    """A row taken for running: the holder's fencing token and what its call needs."""

    lease: datetime
    lease_s: float
    attempts: int  # calls made so far, the one about to be made included when `counted`
    counted: bool
    previous: Any  # the previous step's output, the `previous` of the call
    slot: str | None  # the host slot held for the counted call
    # When the slot's lease ends at the earliest (time.monotonic(), `calls.fresh_slot`); 0:
    # not known.
    slot_lease_ends: float = 0.0


@dataclass(frozen=True)
class RetryLater:
    """The row is not to be run now (its host has no free slot, or it is parked until its
    Retry-After ran out): its message goes back to the queue with this delay."""

    delay_s: float


def claim_pending(
    tx: Transaction, task_id: str, position: int, branch: int, step: HttpCall | SimCall
) -> Claim | RetryLater | None:
    """The common case in one statement: a pending row (never called, so no attempts yet)
    taken for running with its first call counted. None when the row is not pending (the
    caller then locks it and decides). An `http` call's host slot is taken only once the
    row is ours, so a message for a row that is done or running never holds a slot, nor
    waits for one; with none free the row is given back (still in this transaction)."""
    now = utcnow()
    lease_for = lease_s(step)
    lease = now + timedelta(seconds=lease_for)
    key = {"row_task": task_id, "row_position": position, "row_branch": branch}
    if not _CLAIM_PENDING.run(tx, {**key, "lease": lease, "now": now}).rowcount:
        return None
    slot, slot_lease_ends = None, 0.0
    if isinstance(step, HttpCall):
        slot, slot_lease_ends = calls.fresh_slot(step)
        if slot is None:
            _UNCLAIM.run(tx, {**key, "lease": lease, "now": now})
            return RetryLater(calls.slot_retry_delay())
        _release_unless_committed(tx, step, slot)
    previous = previous_output(tx, task_id, position)
    return Claim(lease, lease_for, 1, True, previous, slot, slot_lease_ends)


def claim(tx: Transaction, row: Row, step: HttpCall | SimCall) -> Claim | RetryLater | None:
    """Take the (locked) row for running when it is pending, or running with no live
    lease, and count the call about to be made unless the step's calls are used up. An
    `http` call takes its host slot once the row is known to be claimable: with none free
    only the row's updated_at moves (it is waiting for a slot, with a message coming back
    for it, so the sweeper leaves it be). None when the row is not ours."""
    now = utcnow()
    free = not leased(row["lease_until"], now)
    if row["status"] == "running" and not free and row["heartbeat_at"] is None:
        # parked (see `park`): not before its lease ends; this message comes back then
        left: float = (row["lease_until"] - now).total_seconds()
        return RetryLater(max(left, 0.0) + 0.05)
    if not (row["status"] == "pending" or (row["status"] == "running" and free)):
        return None
    if row["branch"] >= 0 and row["dispatched_at"] is None:
        return None
    # A sim step has no upstream to spare: one whose worker died simply runs again.
    limit = 1 + step.retries if isinstance(step, HttpCall) else 1_000_000
    counted = row["attempts"] < limit
    slot, slot_lease_ends = None, 0.0
    if counted and isinstance(step, HttpCall):
        slot, slot_lease_ends = calls.fresh_slot(step)
        if slot is None:
            tx.execute(update(task_steps).where(_c.id == row["id"]).values(updated_at=now))
            return RetryLater(calls.slot_retry_delay())
        _release_unless_committed(tx, step, slot)
    lease_for = lease_s(step)
    lease = now + timedelta(seconds=lease_for)
    tx.execute(
        update(task_steps)
        .where(_c.id == row["id"])
        .values(
            status="running",
            attempts=_c.attempts + (1 if counted else 0),
            lease_until=lease,
            started_at=case((_c.started_at.is_(None), now), else_=_c.started_at),
            heartbeat_at=now,
            updated_at=now,
        )
    )
    previous = previous_output(tx, row["task_id"], row["position"])
    attempts = row["attempts"] + (1 if counted else 0)
    return Claim(lease, lease_for, attempts, counted, previous, slot, slot_lease_ends)


def _release_unless_committed(tx: Transaction, step: HttpCall, slot: str) -> None:
    """The host slot a claim took goes back if the claim's transaction does not commit
    (a statement after it, or the commit itself, failed): no call is made with it."""
    tx.on_rollback(lambda: calls.release_slot(step, slot), slot_host=step.host_key)


def previous_output(tx: Transaction, task_id: str, position: int) -> Any:
    if position == 0:
        return None
    return tx.execute(
        select(_c.output).where(_c.task_id == task_id, _c.position == position - 1, _c.branch == -1)
    ).scalar()


class Attempts:
    """A claimed row's fencing token: counts each further upstream call in the row while
    the lease it names is still the row's, renewing it."""

    def __init__(
        self, task_id: str, position: int, branch: int, lease: datetime, lease_s: float
    ) -> None:
        self.task_id = task_id
        self.position = position
        self.branch = branch
        self.lease = lease
        self.lease_s = lease_s

    def __call__(self) -> bool:
        return self._renew(self.lease_s, attempts=_c.attempts + 1)

    def hold(self, for_s: float) -> bool:
        """The lease kept `for_s` from now at least, renewed when less is left; False when
        the row is no longer ours (taken over once the lease ran out, or cancelled), so its
        holder writes nothing more for it (not even its output's object). No write while
        enough is left: no row can be taken over before then."""
        if self.lease - utcnow() >= timedelta(seconds=for_s):
            return True
        return self._renew(for_s)

    def _renew(self, lease_s: float, **values: Any) -> bool:
        """The lease renewed to `lease_s` from now (and `values` set) while it is still the
        row's; whether it was."""
        now = utcnow()
        renewed = now + timedelta(seconds=lease_s)
        with transaction() as tx:
            moved = tx.execute(
                update(task_steps)
                .where(self.owned())
                .values(lease_until=renewed, heartbeat_at=now, updated_at=now, **values)
            ).rowcount
        if moved:
            self.lease = renewed
        return bool(moved)

    def owned(self) -> ColumnElement[bool]:
        return and_(
            _c.task_id == self.task_id,
            _c.position == self.position,
            _c.branch == self.branch,
            _c.status == "running",
            _c.lease_until == self.lease,
        )


def give_back(tx: Transaction, attempts: Attempts, unmade: Claim | None) -> bool:
    """Give back a claimed row its holder will not settle (something failed after the
    claim's commit: marking the task running, presigning its input or `previous`, keeping
    the output), so that the redelivered message takes it at once instead of waiting minutes
    for the lease to run out: no lease, and `unmade`, the claim whose counted call was not
    made (None when a call was made), not counting that call (pending again when it was the
    row's first, as `_UNCLAIM` leaves it). Fenced by the holder's lease: False when the row
    was no longer ours, so a give-back never undoes a newer claim."""
    now = utcnow()
    values: dict[str, Any] = {"lease_until": None, "updated_at": now}
    if unmade is not None and unmade.counted:
        values["attempts"] = unmade.attempts - 1
        if unmade.attempts == 1:
            values.update(status="pending", started_at=None, heartbeat_at=None)
    return bool(tx.execute(update(task_steps).where(attempts.owned()).values(**values)).rowcount)


def park(tx: Transaction, attempts: Attempts, delay_s: float, *, unmade: bool = False) -> None:
    """Give the row back for a re-queued message: pending if it was never called, else
    running with no worker (no heartbeat) and a lease that ends when the wait does, so no
    duplicate message or sweeper re-publish calls the upstream before Retry-After ran out
    (`claim` hands such a message back to the queue for the time left). `unmade`: the last
    call counted was not made, and is counted no more."""
    now = utcnow()
    taken_back = 1 if unmade else 0
    tx.execute(
        update(task_steps)
        .where(attempts.owned())
        # In this order: MySQL sets columns left to right, each seeing those set before it,
        # and the status is judged by the count as it was (SQLite always reads it so).
        .ordered_values(
            (_c.status, case((_c.attempts == taken_back, "pending"), else_="running")),
            (_c.attempts, _c.attempts - taken_back),
            (_c.lease_until, now + timedelta(seconds=delay_s)),
            (_c.heartbeat_at, None),
            (_c.updated_at, now),
        )
    )


# -- settles and dispatches ----------------------------------------------------------------


def _settle_params(attempts: Attempts, result: calls.Result, now: datetime) -> dict[str, Any]:
    """The row's result, recorded only while the lease `attempts` holds is still ours."""
    if isinstance(result, calls.Succeeded):
        settled, output, error = "succeeded", result.output, None
    else:
        settled, output, error = "failed", None, result.error
    return {
        "row_task": attempts.task_id,
        "row_position": attempts.position,
        "row_branch": attempts.branch,
        "lease": attempts.lease,
        "settled": settled,
        "output": output,
        "error": error,
        "now": now,
    }


def settle(tx: Transaction, attempts: Attempts, result: calls.Result, now: datetime) -> bool:
    """Record the row's result; False when it was no longer ours (cancelled, taken over)."""
    return bool(_SETTLE.run(tx, _settle_params(attempts, result, now)).rowcount)


def settle_and_claim(
    tx: Transaction,
    attempts: Attempts,
    result: calls.Result,
    successor: int,
    lease: datetime,
    now: datetime,
) -> int:
    """Record a branch's result and claim branch `successor` of its fork with `lease`, in
    one statement; how many of the two rows moved (the caller rolls back unless both). The
    successor's first call is counted with its claim, as `claim_pending` counts it, for
    the caller holds its slot; a call that is not made after all is given back with
    `give_back`."""
    params = _settle_params(attempts, result, now)
    params.update(next_branch=successor, next_lease=lease)
    return _SETTLE_AND_CLAIM.run(tx, params).rowcount


def dispatch_one(tx: Transaction, task_id: str, position: int, branch: int, now: datetime) -> bool:
    """Mark a branch dispatched, unless it already was; True when this call did."""
    key = {"row_task": task_id, "row_position": position, "row_branch": branch, "now": now}
    return bool(_DISPATCH.run(tx, key).rowcount)


def dispatch(
    tx: Transaction, task_id: str, position: int, branches: list[int], now: datetime
) -> None:
    tx.execute(
        update(task_steps)
        .where(
            _c.task_id == task_id,
            _c.position == position,
            _c.branch.in_(branches),
            _c.dispatched_at.is_(None),
        )
        .values(dispatched_at=now, updated_at=now)
    )
