"""A fork's sliding window and its JOIN: start, settle (claiming the successor), dispatch,
join and heal.

A fork fixes its window's width W = PIPELINE_MAX_CONCURRENCY when it starts (kept in the
fork row's `attempts` column) and dispatches branches 0..W-1; branch i, in the transaction
that records its result, dispatches branch i + W. Each branch has exactly one dispatcher, so
at most W are ever dispatched and unsettled, with no lock shared by the window (a sliding
window across function instances: the seed's p-limit).

The common case of that dispatch is one statement that records branch i's result and claims
branch i + W, with a fresh lease as its fencing token, for the settling invocation to run
next with the host slot of i's call (`Next`): no commit, no message and no new invocation
per branch. An invocation that dies after that commit leaves a running row whose lease runs
out, healed as a worker that died mid-call is. Without a free slot, or budget, i + W is only
dispatched, and its message published. The worker looks at the slot again before the
call, as after any claim, for a commit that stalled can outlast its lease: a slot lost,
with no other free, sends i + W back to the queue as any work without a slot.

The JOIN is the UPDATE that moves the fork row from running to succeeded/failed. Only a
settle with no successor takes the fork row's lock and looks for unsettled branches; the
one that finds none makes the JOIN: exactly once.

Owns: the fork row, the window's dispatches, the JOIN and healing what a worker that died
after its commit, or gave back a successor it claimed, left undone. Never makes a call and
never moves the task or the steps around the fork: what follows an ended fork is the
worker's (`Advance.fork_ended`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update

from app.clock import utcnow
from app.config import get_settings
from app.db.conflicts import retry_conflicts
from app.db.tables import task_steps
from app.db.transaction import Transaction, transaction
from app.pipeline.definition import ForkStep, HttpCall
from app.pipeline.messages import Work
from app.redis_client import is_redis_error
from app.runner import calls, rows
from app.runner.outbox import committing
from app.runner.plans import Call, call_of
from app.runner.rows import STEP_TERMINAL, Attempts, Claim, Row
from app.storage import outputs
from app.storage.shares import Limits
from app.tasks.lifecycle import step_failed

# An invocation runs the next branch itself only when its first call fits wholly in what
# is left of the invocation's budget, with this much to spare for settling.
CHAIN_MARGIN_S = 5.0

_c = task_steps.c


@dataclass(frozen=True)
class Next:
    """A successor branch that a settling branch claimed for its invocation to run next."""

    branch: int
    call: Call
    claim: Claim
    width: int


@dataclass(frozen=True)
class Settled:
    """A branch's call has ended: what `settle` records, and what it needs to claim the
    successor for this invocation (`task_input`, `previous`: the fork's, shared by its
    branches; `ends_at`: the invocation's budget, time.monotonic())."""

    attempts: Attempts
    result: calls.Result
    width: int | None
    previous: Any
    task_input: Any
    ends_at: float
    # The slot of the call that just ended: handed to the successor (`_slot_for` takes it
    # out), or else released before the settle alone, so it is free before any message.
    spare: list[calls.HeldSlot]
    limits: Limits  # the task's: the JOIN keeps the results within them

    @property
    def branch(self) -> int:
        return self.attempts.branch


@dataclass(frozen=True)
class Advance:
    """What a start, a settle or a heal of the fork leaves to its caller. The messages of
    the branches it dispatched went out after its commit."""

    fork_ended: bool = False  # the fork row is terminal: what follows it is due
    following: Next | None = None  # the successor claimed for this invocation to run


def start(task_id: str, fork: ForkStep, position: int, limits: Limits) -> Advance:
    """pending -> running, fixing the window's width in the fork row (its `attempts`
    column), and dispatching the first branches. A repeat finds the fork running and
    only heals (see `heal`)."""

    def begin() -> list[int] | None:
        now = utcnow()
        width = get_settings().pipeline_max_concurrency
        with committing() as out:
            tx = out.tx
            moved = tx.execute(
                update(task_steps)
                .where(
                    _c.task_id == task_id,
                    _c.position == position,
                    _c.branch == -1,
                    _c.status == "pending",
                )
                .values(
                    status="running",
                    attempts=width,
                    started_at=now,
                    heartbeat_at=now,
                    updated_at=now,
                )
            ).rowcount
            if not moved:
                return None
            first = (
                tx.execute(
                    select(_c.branch)
                    .where(_c.task_id == task_id, _c.position == position, _c.branch >= 0)
                    .order_by(_c.branch)
                    .limit(width)
                )
                .scalars()
                .all()
            )
            if first:
                rows.dispatch(tx, task_id, position, list(first), now)
            for index in first:
                out.publish(Work(task_id, position, index, width))
        return list(first)

    first = retry_conflicts(begin)
    if not first:  # already started, or a fork over no items (JOIN at once): heal
        return heal(task_id, fork, position, limits)
    return Advance()


def settle(task_id: str, fork: ForkStep, position: int, settled: Settled) -> Advance:
    """Record a settled branch and dispatch its successor, JOINing when it was the last.
    `following` is the successor when the settle claimed it for this invocation to run."""
    return retry_conflicts(lambda: _settle_branch(task_id, fork, position, settled))


def heal(task_id: str, fork: ForkStep, position: int, limits: Limits) -> Advance:
    """For a redelivered or re-published message: whatever a worker that died after its
    commit, or gave back a successor it claimed, left undone (see `_heal`). `limits`: the
    task's (`Plan.limits`)."""
    return retry_conflicts(lambda: _heal(task_id, fork, position, limits))


def _settle_branch(task_id: str, fork: ForkStep, position: int, settled: Settled) -> Advance:
    """The sliding window without a shared lock: branch i, settling, dispatches branch
    i + width (the width the fork started with), so each branch has exactly one
    dispatcher and at most `width` are ever dispatched and unsettled. Only a branch with
    no successor takes the fork row's lock, to see whether it is the last: that settle
    makes the JOIN.

    When it can, the settle also claims the successor, with a host slot, for this
    invocation to run next (see `_settle_and_claim`); otherwise the successor is only
    dispatched, and its message published after the commit."""
    try:
        advance = _settle_and_claim(task_id, fork, position, settled)
    except _NotBoth:  # rolled back: record the result alone
        advance = None
    finally:
        while settled.spare:  # not handed to a successor: free before any publish
            settled.spare.pop().release()
    if advance is not None:
        return advance
    return _settle(task_id, fork, position, settled)


class _NotBoth(Exception):
    """`rows.settle_and_claim` moved one row of the two: the transaction must not commit."""


def _settle(task_id: str, fork: ForkStep, position: int, settled: Settled) -> Advance:
    """The settle alone: record the result, then dispatch the successor or JOIN. Nothing to
    do when the result was not ours to record (cancelled or taken over meanwhile)."""
    with committing() as out:
        tx = out.tx
        now = utcnow()
        width = settled.width
        if width is None:
            width = tx.execute(
                select(_c.attempts).where(
                    _c.task_id == task_id, _c.position == position, _c.branch == -1
                )
            ).scalar_one()
        width = max(int(width), 1)
        successor = settled.branch + width
        if not rows.settle(tx, settled.attempts, settled.result, now):
            return Advance()
        if rows.dispatch_one(tx, task_id, position, successor, now):
            out.publish(Work(task_id, position, successor, width))
            return Advance()
        joined = _join_if_done(tx, fork, task_id, position, now, settled.limits)
    return Advance(fork_ended=joined)


def _settle_and_claim(
    task_id: str, fork: ForkStep, position: int, settled: Settled
) -> Advance | None:
    """Record the settle and claim the successor in one statement and its commit, for
    this invocation to run it next: one commit, one statement and one queue hop fewer per
    branch. Only for a successor that exists, whose first call fits in what is left of
    the invocation's budget and that has a host slot (the settling call's, handed on, or a
    free one; taken before the statement and given back when it changes nothing), which
    the worker checks is still held before the call, as after any claim
    (`calls.live_slot`). The successor's lease is its fencing token as after any claim: an
    invocation that dies after this commit leaves a running row whose lease runs out,
    which the sweeper publishes again, as for a worker that died mid-call. None when
    nothing was written (or the width is not known here): the caller then settles alone;
    `_NotBoth` when only one row moved (the settle was not ours, or the successor not
    claimable)."""
    if settled.width is None:
        return None
    width = max(settled.width, 1)
    successor = settled.branch + width
    call = call_of(fork, settled.task_input, successor)
    if call is None:
        return None
    step = call.step
    first_call_s = step.timeout_s if isinstance(step, HttpCall) else step.duration_ms / 1000
    if time.monotonic() + first_call_s + CHAIN_MARGIN_S > settled.ends_at:
        return None
    slot, slot_lease_ends = None, 0.0
    if isinstance(step, HttpCall):
        try:
            slot, slot_lease_ends = _slot_for(step, settled.spare)
        except Exception as error:
            if not is_redis_error(error):
                raise
            # Redis went away during the call: no slot to be had, and the branch's answer is
            # not lost for it. The settle alone; the successor's claim waits for Redis.
            return None
        if slot is None:
            return None
    claimed = False
    try:
        # Prepared statements only: a driver transaction, without the Core Connection.
        with transaction() as tx:
            now = utcnow()
            lease_s = rows.lease_s(step)
            lease = now + timedelta(seconds=lease_s)
            moved = rows.settle_and_claim(
                tx, settled.attempts, settled.result, successor, lease, now
            )
            if moved == 1:
                raise _NotBoth()
        claimed = moved == 2
    finally:
        if not claimed:
            calls.release_slot(step, slot)
    if not claimed:
        return None
    claim = Claim(lease, lease_s, 1, True, settled.previous, slot, slot_lease_ends)
    return Advance(following=Next(successor, call, claim, width))


def _slot_for(step: HttpCall, spare: list[calls.HeldSlot]) -> tuple[str | None, float]:
    """A host slot for the successor's call, and when its lease ends at the earliest.
    The settling branch's slot changes hands inside this invocation, never free in
    between, when its host is the same (see `calls.still_held`). Otherwise a fresh slot;
    None when the host has none free. Checked again before the call (`calls.live_slot`)."""
    while spare:
        held = spare.pop()
        if held.host_key == step.host_key:
            token, lease_ends = calls.still_held(step, held.token, held.lease_ends)
            if token is not None:
                return token, lease_ends
        held.release()
    return calls.fresh_slot(step)


def _join_if_done(
    tx: Transaction, fork: ForkStep, task_id: str, position: int, now: datetime, limits: Limits
) -> bool:
    """Under the fork row's lock: when no branch is left unsettled, write the JOIN (the
    fork row running -> succeeded/failed). True when this call made it."""
    fork_row = tx.execute(
        select(_c.id, _c.status)
        .where(_c.task_id == task_id, _c.position == position, _c.branch == -1)
        .with_for_update()
    ).first()
    if fork_row is None or fork_row.status != "running":
        return False
    unsettled = tx.execute(
        select(_c.branch)
        .where(
            _c.task_id == task_id,
            _c.position == position,
            _c.branch >= 0,
            _c.status.in_(("pending", "running")),
        )
        .limit(1)
    ).first()
    if unsettled is not None:
        return False
    branches = (
        tx.execute(
            select(_c.branch, _c.status, _c.output, _c.error)
            .where(_c.task_id == task_id, _c.position == position, _c.branch >= 0)
            .order_by(_c.branch)
        )
        .mappings()
        .all()
    )
    joined = _join(fork, branches)
    # A hundred branch values of up to STORAGE_INLINE_MAX_BYTES each would make one large
    # row, and a wide task's view too large to answer: results that do not fit the task's
    # limit for them keep their values in COS (app.storage.outputs).
    results_limit = limits.results(len(branches))
    joined["output"] = outputs.keep_results(task_id, fork.id, joined["output"], results_limit)
    return bool(
        tx.execute(
            update(task_steps)
            .where(_c.id == fork_row.id, _c.status == "running")
            .values(**joined, finished_at=now, updated_at=now)
        ).rowcount
    )


def _heal(task_id: str, fork: ForkStep, position: int, limits: Limits) -> Advance:
    """Successors of settled branches that were never dispatched are dispatched;
    dispatched branches never claimed, and running ones with no live lease, are published
    again; the JOIN is made if due; and an ended fork says so, for what follows it to be
    carried on.

    A message may be lost; and a successor this invocation's worker claimed and gave back
    after a failure (running, its lease cleared: `rows.give_back`) has no message of its
    own, for the one redelivered is the branch that settled before it. Claiming is
    conditional, so a duplicate is harmless; a branch under a live lease (in its call, or
    parked until its Retry-After: `rows.park`) is left to its holder."""
    with committing() as out:
        tx = out.tx
        now = utcnow()
        fork_row = tx.execute(
            select(_c.status, _c.attempts)
            .where(_c.task_id == task_id, _c.position == position, _c.branch == -1)
            .with_for_update()
        ).first()
        if fork_row is None:
            return Advance()
        width = max(int(fork_row.attempts), 1)
        if fork_row.status != "running":
            return Advance(fork_ended=fork_row.status in STEP_TERMINAL)
        branch_rows = tx.execute(
            select(_c.branch, _c.status, _c.dispatched_at, _c.lease_until)
            .where(_c.task_id == task_id, _c.position == position, _c.branch >= 0)
            .order_by(_c.branch)
        ).all()
        by_index = {r.branch: r for r in branch_rows}
        owed = [
            r.branch + width if r.branch + width in by_index else None
            for r in branch_rows
            if r.status in STEP_TERMINAL
        ]
        owed += [r.branch for r in branch_rows if r.branch < width]
        missing = sorted({b for b in owed if b is not None and by_index[b].dispatched_at is None})
        if missing:
            rows.dispatch(tx, task_id, position, missing, now)
        resend = [
            r.branch
            for r in branch_rows
            if r.dispatched_at is not None
            and (
                r.status == "pending"
                or (r.status == "running" and not rows.leased(r.lease_until, now))
            )
        ]
        for index in sorted(set(missing) | set(resend)):
            out.publish(Work(task_id, position, index, width))
        joined = _join_if_done(tx, fork, task_id, position, now, limits)
    return Advance(fork_ended=joined)


def _join(fork: ForkStep, branches: Sequence[Row]) -> dict[str, Any]:
    """allSettled, in branch order; the fork succeeds when at least min_success did."""
    results: list[dict[str, Any]] = []
    succeeded = 0
    for branch in branches:
        if branch["status"] == "succeeded":
            succeeded += 1
            results.append({"status": "fulfilled", "value": branch["output"]})
        else:
            reason = branch["error"] or step_failed(f"the branch was {branch['status']}")
            results.append({"status": "rejected", "reason": reason})
    needed = len(branches) if fork.min_success is None else fork.min_success
    if succeeded >= needed:
        return {"status": "succeeded", "output": results, "error": None}
    error = step_failed(f"{succeeded} of {len(branches)} branches succeeded, {needed} needed")
    return {"status": "failed", "output": results, "error": error}
