"""The pipeline worker: one queue message runs one step or one fork branch (and the
branches that follow that one in its place of the fork's window, see below).

Messages on PIPELINE_QUEUE: `{"kind": "step", "task_id", "step": position}` and
`{"kind": "branch", "task_id", "step": position, "branch": index}`. All state lives in
`task_steps`; every transition is a conditional UPDATE, so a message delivered twice, or
re-published by the sweeper, never does a thing twice:

- a step or branch runs only after claiming its row (pending, or running with no live
  lease); the lease value it set is its fencing token, so a worker whose row was taken
  over or cancelled meanwhile discards what it got;
- a fork fixes its window's width W = PIPELINE_MAX_CONCURRENCY when it starts (kept in
  the fork row's `attempts` column) and dispatches branches 0..W-1; branch i, in the
  transaction that records its result, dispatches branch i + W. Each branch has exactly
  one dispatcher, so at most W are ever dispatched and unsettled, with no lock shared by
  the window (a sliding window across function instances: the seed's p-limit);
- the common case of that dispatch is one statement that records branch i's result and
  claims branch i + W (running, with a fresh lease: its fencing token); the invocation
  then runs i + W itself, with the host slot of i's call, looping while its budget
  (INVOCATION_BUDGET_S) allows a whole call: no commit, no message and no new invocation
  per branch. An invocation that dies after that commit leaves a running row whose lease
  runs out, healed as a worker that died mid-call is (the sweeper publishes it again and
  a new claim takes it over); a cancel or a takeover fails the loop's next settle, which
  ends it. Without a free slot, or budget, i + W is only dispatched, and its message
  published;
- the JOIN is the UPDATE that moves the fork row from running to succeeded/failed. Only a
  settle with no successor takes the fork row's lock and looks for unsettled branches;
  the one that finds none makes the JOIN: exactly once;
- a message for work that already ended re-does only what follows it (publishing the next
  step, finishing the task), which is how a worker that died after its commit is healed.

Messages are published after the commit that makes them valid. A message lost in between
leaves a row with no progress, which the saga sweeper finds and publishes again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import JSON, and_, bindparam, case, select, update

from app.config import get_settings
from app.db.conflicts import retry_conflicts
from app.db.prepared import Prepared
from app.db.tables import task_steps, tasks
from app.db.transaction import Transaction, transaction
from app.db.types import UtcDateTime, utcnow
from app.observability import logging as applog
from app.pipeline.definition import ForkStep, HttpCall, SimCall, parse_steps
from app.pipeline.messages import publish_branch, publish_step
from app.tasks import lifecycle
from app.tasks.lifecycle import step_failed

log = applog.get_logger("app.runner.worker")

STEP_TERMINAL = ("succeeded", "failed", "cancelled")
LEASE_MARGIN_S = 30.0
Row = Mapping[Any, Any]

# The statements every branch runs, built once: building them per call costs more than
# the database round trip on a busy worker. They run on the driver's cursor, compiled once
# per dialect (app.db.prepared): a branch's claim and settle are the window's critical path.
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
# Gives back, in the same transaction, a row `_CLAIM_PENDING` just took when its host has no
# free slot. Its updated_at moves: the row is waiting for a slot, with a message that keeps
# coming back for it, so the sweeper must not publish another.
_UNCLAIM = Prepared(
    update(task_steps)
    .where(_THIS_ROW)
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
# the transaction is rolled back.
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
# An invocation runs the next branch itself only when its first call fits wholly in what
# is left of the invocation's budget, with this much to spare for settling.
CHAIN_MARGIN_S = 5.0
# A slot handed from a branch to its successor is renewed once its lease has lost this
# much (see `_slot_for`): one Redis round trip per second of calls instead of per call.
SLOT_REUSE_S = 1.0


def handle(message: dict[str, Any]) -> None:
    """The pipeline-worker's consumer. Raising makes the platform deliver it again."""
    kind = message.get("kind")
    task_id = message.get("task_id")
    position = message.get("step")
    branch = message.get("branch", -1)
    valid = (
        kind in ("step", "branch")
        and isinstance(task_id, str)
        and isinstance(position, int)
        and isinstance(branch, int)
        and (kind == "step" or branch >= 0)
    )
    if not valid:  # can never succeed: redelivering it would only repeat this line
        applog.log_fields(log, logging.ERROR, "pipeline message dropped", body=message)
        return
    from app.runner.calls import INVOCATION_BUDGET_S

    ends_at = time.monotonic() + INVOCATION_BUDGET_S
    assert isinstance(task_id, str) and isinstance(position, int) and isinstance(branch, int)
    width = message.get("width")
    width = width if isinstance(width, int) and width > 0 else None
    # One transaction reads the row and, when there is a call to make, claims it: the
    # common path of a message costs one commit before the call. A branch message reads
    # the task's plan from this instance's memory when it can: it never changes, and a
    # cancelled task's rows are cancelled too, which the claim sees.
    claim: _Claim | float | None = None
    status: str | None = None
    with transaction() as conn:
        plan = _plans.get(task_id) if kind == "branch" else None
        if plan is None:
            task = (
                conn.execute(
                    select(tasks.c.id, tasks.c.status, tasks.c.input, tasks.c.steps).where(
                        tasks.c.id == task_id
                    )
                )
                .mappings()
                .first()
            )
            if task is None or task["status"] in lifecycle.TERMINAL:
                return
            status = task["status"]
            plan = _plans.remember(task_id, task["input"], task["steps"])
        if not 0 <= position < len(plan.steps):
            return
        work = _work_of(plan.steps[position], plan.input, branch)
        row = None
        if work is not None:
            claim = _claim_pending(conn, task_id, position, branch, work[0])
        if claim is None:  # not pending: look at the row and decide
            row = _step_row(conn, task_id, position, branch, lock=True)
            if row is None:
                return
            if work is not None and row["status"] not in STEP_TERMINAL:
                claim = _claim(conn, row, work[0])
    if status == "queued":
        lifecycle.mark_running(task_id)
    steps = plan.steps
    if isinstance(claim, _Claim):
        assert work is not None
        _run(task_id, plan, position, branch, work, claim, width, ends_at)
    elif isinstance(claim, float):  # no free host slot: try again shortly
        _publish_again(task_id, position, branch, claim, width)
    elif row is None:
        return
    elif row["status"] in STEP_TERMINAL:
        if branch < 0:
            _after_step(task_id, steps, position)
        else:  # the JOIN or the next dispatch may still be due
            _advance_fork(task_id, steps, position)
    elif work is None and isinstance(steps[position], ForkStep) and branch < 0:
        _start_fork(task_id, steps, position)


@dataclass(frozen=True)
class _Plan:
    input: Any
    steps: list[Any]


class _Plans:
    """Tasks' input and parsed steps, which never change after creation, kept per
    instance (least recently used out first). Small: an SCF instance runs one message at
    a time, so the hits come from the last few tasks, and an input may be large."""

    def __init__(self, size: int = 32) -> None:
        self.size = size
        self._items: OrderedDict[str, _Plan] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, task_id: str) -> _Plan | None:
        with self._lock:
            plan = self._items.get(task_id)
            if plan is not None:
                self._items.move_to_end(task_id)
            return plan

    def remember(self, task_id: str, task_input: Any, raw_steps: Any) -> _Plan:
        plan = _Plan(task_input, parse_steps(raw_steps))
        with self._lock:
            self._items[task_id] = plan
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return plan


_plans = _Plans()


def _publish_again(
    task_id: str, position: int, branch: int, delay_s: float, width: int | None = None
) -> None:
    if branch < 0:
        publish_step(task_id, position, delay_s)
    else:
        publish_branch(task_id, position, branch, delay_s, width)


def _work_of(step: Any, task_input: Any, branch: int) -> tuple[HttpCall | SimCall, Any] | None:
    """The call a message asks for and its `input`; None for a fork's own row."""
    if isinstance(step, ForkStep):
        if branch < 0 or branch >= len(step.items(task_input)):
            return None
        item = task_input if step.branches is not None else step.items(task_input)[branch]
        return step.branch_step(branch), item
    return (step, task_input) if branch < 0 else None


# -- rows ----------------------------------------------------------------------------------


def _step_row(
    conn: Transaction, task_id: str, position: int, branch: int = -1, *, lock: bool = False
) -> Row | None:
    query = select(task_steps).where(
        task_steps.c.task_id == task_id,
        task_steps.c.position == position,
        task_steps.c.branch == branch,
    )
    return conn.execute(query.with_for_update() if lock else query).mappings().first()


def _lease_s(step: HttpCall | SimCall) -> float:
    if isinstance(step, HttpCall):
        return (step.timeout_s + 3) * (1 + step.retries) + LEASE_MARGIN_S
    return step.duration_ms / 1000 + LEASE_MARGIN_S


@dataclass(frozen=True)
class _Claim:
    lease: datetime
    lease_s: float
    attempts: int  # calls made so far, the one about to be made included when `counted`
    counted: bool
    previous: Any  # the previous step's output, the `previous` of the call
    slot: str | None  # the host slot held for the counted call
    slot_until: float = 0.0  # when its lease ends at the earliest (epoch s); 0: not known


def _claim_pending(
    conn: Transaction, task_id: str, position: int, branch: int, step: HttpCall | SimCall
) -> _Claim | float | None:
    """The common case in one statement: a pending row (never called, so no attempts yet)
    taken for running with its first call counted. None when the row is not pending (the
    caller then locks it and decides). An `http` call's host slot is taken only once the
    row is ours, so a message for a row that is done or running never holds a slot, nor
    waits for one; with none free the row is given back (still in this transaction) and
    the answer is the delay to re-queue with."""
    from app.runner import calls

    now = utcnow()
    lease_s = _lease_s(step)
    lease = now + timedelta(seconds=lease_s)
    key = {"row_task": task_id, "row_position": position, "row_branch": branch}
    if not _CLAIM_PENDING.run(conn, {**key, "lease": lease, "now": now}).rowcount:
        return None
    slot = None
    if isinstance(step, HttpCall):
        slot = calls.take_slot(step)
        if slot is None:
            _UNCLAIM.run(conn, {**key, "now": now})
            return calls.slot_retry_delay()
    try:
        previous = _previous_output(conn, task_id, position)
    except BaseException:
        _release_slot(step, slot)
        raise
    return _Claim(lease, lease_s, 1, True, previous, slot)


def _release_slot(step: HttpCall | SimCall, slot: str | None) -> None:
    """Give back the host slot taken for a call that will not be made."""
    if slot is not None and isinstance(step, HttpCall):
        from app.runner import slots

        slots.release(step.host_key, slot)


def _previous_output(conn: Transaction, task_id: str, position: int) -> Any:
    if position == 0:
        return None
    c = task_steps.c
    return conn.execute(
        select(c.output).where(c.task_id == task_id, c.position == position - 1, c.branch == -1)
    ).scalar()


def _claim(conn: Transaction, row: Row, step: HttpCall | SimCall) -> _Claim | float | None:
    """Take the (locked) row for running when it is pending, or running with no live
    lease, and count the call about to be made unless the step's calls are used up. An
    `http` call takes its host slot once the row is known to be claimable: with none free
    only the row's updated_at moves (it is waiting for a slot, with a message coming back
    for it, so the sweeper leaves it be) and the answer is the delay to re-queue with.
    None when the row is not ours."""
    from app.runner import calls

    now = utcnow()
    free = row["lease_until"] is None or row["lease_until"] < now
    if row["status"] == "running" and not free and row["heartbeat_at"] is None:
        # parked (see `_park`): not before its lease ends; this message comes back then
        left: float = (row["lease_until"] - now).total_seconds()
        return max(left, 0.0) + 0.05
    if not (row["status"] == "pending" or (row["status"] == "running" and free)):
        return None
    if row["branch"] >= 0 and row["dispatched_at"] is None:
        return None
    # A sim step has no upstream to spare: one whose worker died simply runs again.
    limit = 1 + step.retries if isinstance(step, HttpCall) else 1_000_000
    counted = row["attempts"] < limit
    slot = None
    if counted and isinstance(step, HttpCall):
        slot = calls.take_slot(step)
        if slot is None:
            conn.execute(
                update(task_steps).where(task_steps.c.id == row["id"]).values(updated_at=now)
            )
            return calls.slot_retry_delay()
    lease_s = _lease_s(step)
    lease = now + timedelta(seconds=lease_s)
    c = task_steps.c
    try:
        conn.execute(
            update(task_steps)
            .where(c.id == row["id"])
            .values(
                status="running",
                attempts=c.attempts + (1 if counted else 0),
                lease_until=lease,
                started_at=case((c.started_at.is_(None), now), else_=c.started_at),
                heartbeat_at=now,
                updated_at=now,
            )
        )
        previous = _previous_output(conn, row["task_id"], row["position"])
    except BaseException:
        _release_slot(step, slot)
        raise
    attempts = row["attempts"] + (1 if counted else 0)
    return _Claim(lease, lease_s, attempts, counted, previous, slot)


class _Attempts:
    """Counts each further upstream call in the row, fenced by the lease we hold."""

    def __init__(
        self, task_id: str, position: int, branch: int, lease: datetime, lease_s: float
    ) -> None:
        self.key = (task_id, position, branch)
        self.lease = lease
        self.lease_s = lease_s

    def __call__(self) -> bool:
        now = utcnow()
        renewed = now + timedelta(seconds=self.lease_s)
        c = task_steps.c
        with transaction() as conn:
            moved = conn.execute(
                update(task_steps)
                .where(self.owned())
                .values(
                    attempts=c.attempts + 1, lease_until=renewed, heartbeat_at=now, updated_at=now
                )
            ).rowcount
        if moved:
            self.lease = renewed
        return bool(moved)

    def owned(self) -> Any:
        c = task_steps.c
        task_id, position, branch = self.key
        return and_(
            c.task_id == task_id,
            c.position == position,
            c.branch == branch,
            c.status == "running",
            c.lease_until == self.lease,
        )


@dataclass(frozen=True)
class _Next:
    """A successor branch that a settling branch claimed for its invocation to run next."""

    branch: int
    work: tuple[HttpCall | SimCall, Any]
    claim: _Claim
    width: int


def _run(
    task_id: str,
    plan: _Plan,
    position: int,
    row_branch: int,
    work: tuple[HttpCall | SimCall, Any],
    claim: _Claim,
    width: int | None,
    ends_at: float,
) -> None:
    """Make the claimed call, then settle the row (a branch settles under its fork's lock
    and moves the window) or park it for a re-queued message. A branch whose settle
    claimed its successor runs that one next, in this invocation, while `ends_at` (the
    invocation's budget, time.monotonic()) allows."""
    from app.runner import calls

    steps = plan.steps
    step_id = steps[position].id
    while True:
        step, item = work
        branch = row_branch if row_branch >= 0 else None
        payload = {
            "task_id": task_id,
            "step_id": step_id,
            "branch": branch,
            "input": item,
            "previous": claim.previous,
        }
        key = f"{task_id}:{step_id}:{'-' if branch is None else branch}"
        attempts = _Attempts(task_id, position, row_branch, claim.lease, claim.lease_s)
        kept: list[str] = []  # a branch keeps its slot for the successor it may run next
        if isinstance(step, HttpCall):
            outcome = calls.run_http(
                step,
                payload,
                key,
                claim.attempts,
                attempts,
                claim.slot,
                ends_at,
                kept if branch is not None else None,
            )
        else:
            outcome = calls.run_sim(step, payload)
        if isinstance(outcome, calls.Requeue):
            _park(attempts, outcome.delay_s)
            _publish_again(task_id, position, row_branch, outcome.delay_s, width)
            return
        if isinstance(outcome, calls.Abandoned):
            return
        if branch is None:
            with transaction() as unit:
                moved = _SETTLE.run(unit, _settle_params(attempts, outcome, utcnow())).rowcount
            if moved:
                _after_step(task_id, steps, position)
            return
        spare = [
            (step.host_key, token, claim.slot_until if token == claim.slot else 0.0)
            for token in kept
            if isinstance(step, HttpCall)
        ]
        settled = _Settled(attempts, outcome, width, claim.previous, plan.input, ends_at, spare)
        following = _advance_fork(task_id, steps, position, settled)
        if following is None:
            return
        row_branch, work, claim = following.branch, following.work, following.claim
        width = following.width


def _park(attempts: _Attempts, delay_s: float) -> None:
    """Give the row back for the re-queued message: pending if it was never called, else
    running with no worker (no heartbeat) and a lease that ends when the wait does, so no
    duplicate message or sweeper re-publish calls the upstream before Retry-After ran out
    (`_claim` hands such a message back to the queue for the time left)."""
    now = utcnow()
    c = task_steps.c
    with transaction() as conn:
        conn.execute(
            update(task_steps)
            .where(attempts.owned())
            .values(
                status=case((c.attempts == 0, "pending"), else_="running"),
                lease_until=now + timedelta(seconds=delay_s),
                heartbeat_at=None,
                updated_at=now,
            )
        )


def _settled_values(outcome: Any) -> dict[str, Any]:
    from app.runner.calls import Succeeded

    if isinstance(outcome, Succeeded):
        return {"status": "succeeded", "output": outcome.output, "error": None}
    return {"status": "failed", "output": None, "error": outcome.error}


# -- plain steps ---------------------------------------------------------------------------


def _after_step(task_id: str, steps: list[Any], position: int) -> None:
    """What follows a settled step: the next step, or the end of the task."""
    c = task_steps.c
    with transaction() as conn:  # the step's row and the next step's, in one query
        rows = {
            r["position"]: r
            for r in conn.execute(
                select(task_steps).where(
                    c.task_id == task_id, c.position.in_((position, position + 1)), c.branch == -1
                )
            ).mappings()
        }
    row = rows.get(position)
    following = rows.get(position + 1) if position + 1 < len(steps) else None
    if row is None:
        return
    if row["status"] == "failed":
        message = (row["error"] or {}).get("message") or "it failed"
        lifecycle.finish(task_id, error=step_failed(f"step {row['step_id']!r} failed: {message}"))
    elif row["status"] == "succeeded":
        if following is None:
            lifecycle.finish(task_id, output=row["output"])
        elif following["status"] == "pending":
            publish_step(task_id, position + 1)


# -- forks ---------------------------------------------------------------------------------


def _start_fork(task_id: str, steps: list[Any], position: int) -> None:
    """pending -> running, fixing the window's width in the fork row (its `attempts`
    column), and dispatching the first branches. A repeat finds the fork running and
    only heals (see `_heal_fork`)."""
    c = task_steps.c

    def start() -> tuple[list[int], int] | None:
        now = utcnow()
        width = get_settings().pipeline_max_concurrency
        with transaction() as conn:
            moved = conn.execute(
                update(task_steps)
                .where(
                    c.task_id == task_id,
                    c.position == position,
                    c.branch == -1,
                    c.status == "pending",
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
                conn.execute(
                    select(c.branch)
                    .where(c.task_id == task_id, c.position == position, c.branch >= 0)
                    .order_by(c.branch)
                    .limit(width)
                )
                .scalars()
                .all()
            )
            if first:
                _dispatch(conn, task_id, position, list(first), now)
        return list(first), width

    started = retry_conflicts(start)
    if started is None:
        _advance_fork(task_id, steps, position)
        return
    first, width = started
    for index in first:
        publish_branch(task_id, position, index, width=width)
    if not first:  # a fork over no items: JOIN at once
        _advance_fork(task_id, steps, position)


def _dispatch(
    conn: Transaction, task_id: str, position: int, branches: list[int], now: Any
) -> None:
    c = task_steps.c
    conn.execute(
        update(task_steps)
        .where(
            c.task_id == task_id,
            c.position == position,
            c.branch.in_(branches),
            c.dispatched_at.is_(None),
        )
        .values(dispatched_at=now, updated_at=now)
    )


@dataclass(frozen=True)
class _Settled:
    """A branch's call has ended: what `_settle_branch` records, and what it needs to
    claim the successor for this invocation (`task_input`, `previous`: the fork's, shared
    by its branches; `ends_at`: the invocation's budget; `spare`: see `_slot_for`)."""

    attempts: _Attempts
    outcome: Any
    width: int | None
    previous: Any
    task_input: Any
    ends_at: float
    # the slot (host, token, lease end) of the call that just ended, for the successor
    spare: list[tuple[str, str, float]]

    @property
    def branch(self) -> int:
        return self.attempts.key[2]


def _advance_fork(
    task_id: str,
    steps: list[Any],
    position: int,
    settle: _Settled | None = None,
) -> _Next | None:
    """Record a settled branch and dispatch its successor, JOINing when it was the last;
    without `settle`, heal the fork (see `_heal_fork`). Publishes after the commit. The
    answer is the successor when the settle claimed it for this invocation to run."""
    done: tuple[list[int], bool, int, _Next | None] | None
    if settle is None:
        done = retry_conflicts(lambda: (*_heal_fork(task_id, steps, position), None))
    else:
        done = retry_conflicts(lambda: _settle_branch(task_id, steps, position, settle))
    if done is None:
        return None
    to_dispatch, carry_on, width, following = done
    for index in to_dispatch:
        publish_branch(task_id, position, index, width=width)
    if carry_on:
        _after_step(task_id, steps, position)
    return following


def _settle_branch(
    task_id: str, steps: list[Any], position: int, settle: _Settled
) -> tuple[list[int], bool, int, _Next | None] | None:
    """The sliding window without a shared lock: branch i, settling, dispatches branch
    i + width (the width the fork started with), so each branch has exactly one
    dispatcher and at most `width` are ever dispatched and unsettled. Only a branch with
    no successor takes the fork row's lock, to see whether it is the last: that settle
    makes the JOIN. None when the result was not ours to record.

    When it can, the settle also claims the successor, with a host slot, for this
    invocation to run next (see `_settle_and_claim`); otherwise the successor is only
    dispatched, and its message published after the commit."""
    from app.runner import slots

    try:
        try:
            following = _settle_and_claim(task_id, steps, position, settle)
        except _NotBoth:  # rolled back: record the result alone
            following = None
        if following is not None:
            return [], False, following.width, following
        return _settle(task_id, steps, position, settle)
    finally:
        while settle.spare:  # not taken over by a successor: free before any publish
            host_key, token, _until = settle.spare.pop()
            slots.release(host_key, token)


def _settle_params(attempts: _Attempts, outcome: Any, now: datetime) -> dict[str, Any]:
    """The parameters of `_SETTLE`, which `_SETTLE_AND_CLAIM` takes too: the row's result,
    recorded only while the lease `attempts` holds is still ours."""
    task_id, position, branch = attempts.key
    values = _settled_values(outcome)
    return {
        "row_task": task_id,
        "row_position": position,
        "row_branch": branch,
        "lease": attempts.lease,
        "settled": values["status"],
        "output": values["output"],
        "error": values["error"],
        "now": now,
    }


class _NotBoth(Exception):
    """`_SETTLE_AND_CLAIM` moved one row of the two: the transaction must not commit."""


def _settle(
    task_id: str, steps: list[Any], position: int, settle: _Settled
) -> tuple[list[int], bool, int, _Next | None] | None:
    """The settle alone: record the result, then dispatch the successor or JOIN."""
    with transaction() as conn:
        now = utcnow()
        width = settle.width
        if width is None:
            c = task_steps.c
            width = conn.execute(
                select(c.attempts).where(
                    c.task_id == task_id, c.position == position, c.branch == -1
                )
            ).scalar_one()
        width = max(int(width), 1)
        successor = settle.branch + width
        params = _settle_params(settle.attempts, settle.outcome, now)
        if not _SETTLE.run(conn, params).rowcount:
            return None  # cancelled or taken over meanwhile: the result is discarded
        dispatched = _DISPATCH.run(
            conn,
            {"row_task": task_id, "row_position": position, "row_branch": successor, "now": now},
        ).rowcount
        if dispatched:
            return [successor], False, width, None
        joined = _join_if_done(conn, steps[position], task_id, position, now)
    return [], joined, width, None


def _settle_and_claim(
    task_id: str, steps: list[Any], position: int, settle: _Settled
) -> _Next | None:
    """Record the settle and claim the successor in one statement and its commit, for
    this invocation to run it next: one commit, one statement and one queue hop fewer per
    branch. Only for a successor that exists, whose first call fits in what is left of
    the invocation's budget and that has a host slot (the settling call's, handed on, or a
    free one; taken before the statement and given back when it changes nothing). The
    successor's lease is its fencing token as after any claim: an invocation that dies
    after this commit leaves a running row whose lease runs out, which the sweeper
    publishes again, as for a worker that died mid-call. None when nothing was written
    (or the width is not known here): the caller then settles alone; `_NotBoth` when only
    one row moved (the settle was not ours, or the successor not claimable)."""
    if settle.width is None:
        return None
    width = max(settle.width, 1)
    successor = settle.branch + width
    work = _work_of(steps[position], settle.task_input, successor)
    if work is None:
        return None
    step = work[0]
    first_call_s = step.timeout_s if isinstance(step, HttpCall) else step.duration_ms / 1000
    if time.monotonic() + first_call_s + CHAIN_MARGIN_S > settle.ends_at:
        return None
    slot, slot_until = None, 0.0
    if isinstance(step, HttpCall):
        slot, slot_until = _slot_for(step, settle.spare)
        if slot is None:
            return None
    claimed = False
    try:
        # Prepared statements only: a driver transaction, without the Core Connection.
        with transaction() as unit:
            now = utcnow()
            lease_s = _lease_s(step)
            lease = now + timedelta(seconds=lease_s)
            params = _settle_params(settle.attempts, settle.outcome, now)
            params.update(next_branch=successor, next_lease=lease)
            moved = _SETTLE_AND_CLAIM.run(unit, params).rowcount
            if moved == 1:
                raise _NotBoth()
        claimed = moved == 2
    finally:
        if not claimed:
            _release_slot(step, slot)
    if not claimed:
        return None
    claim = _Claim(lease, lease_s, 1, True, settle.previous, slot, slot_until)
    return _Next(successor, work, claim, width)


def _slot_for(step: HttpCall, spare: list[tuple[str, str, float]]) -> tuple[str | None, float]:
    """A host slot for the successor's call, and when its lease ends at the earliest.
    The settling branch's slot changes hands inside this invocation, never free in
    between, when its host is the same: as it is while its lease has lost less than
    SLOT_REUSE_S (so a call still starts with at least its timeout plus
    SLOT_LEASE_MARGIN_S - SLOT_REUSE_S of lease ahead), else renewed. Otherwise a fresh
    slot; None when the host has none free."""
    from app.runner import calls, slots

    lease_s = calls.slot_lease_s(step)
    while spare:
        host_key, token, until = spare.pop()
        if host_key == step.host_key:
            now = time.time()
            if until - now >= lease_s - SLOT_REUSE_S:
                return token, until
            if calls.renew_slot(step, token):
                return token, now + lease_s
        slots.release(host_key, token)
    now = time.time()
    return calls.take_slot(step), now + lease_s


def _join_if_done(conn: Transaction, fork: ForkStep, task_id: str, position: int, now: Any) -> bool:
    """Under the fork row's lock: when no branch is left unsettled, write the JOIN (the
    fork row running -> succeeded/failed). True when this call made it."""
    c = task_steps.c
    fork_row = conn.execute(
        select(c.id, c.status)
        .where(c.task_id == task_id, c.position == position, c.branch == -1)
        .with_for_update()
    ).first()
    if fork_row is None or fork_row.status != "running":
        return False
    unsettled = conn.execute(
        select(c.branch)
        .where(
            c.task_id == task_id,
            c.position == position,
            c.branch >= 0,
            c.status.in_(("pending", "running")),
        )
        .limit(1)
    ).first()
    if unsettled is not None:
        return False
    branches = (
        conn.execute(
            select(c.branch, c.status, c.output, c.error)
            .where(c.task_id == task_id, c.position == position, c.branch >= 0)
            .order_by(c.branch)
        )
        .mappings()
        .all()
    )
    return bool(
        conn.execute(
            update(task_steps)
            .where(c.id == fork_row.id, c.status == "running")
            .values(**_join(fork, branches), finished_at=now, updated_at=now)
        ).rowcount
    )


def _heal_fork(task_id: str, steps: list[Any], position: int) -> tuple[list[int], bool, int]:
    """For a redelivered or re-published message: whatever a worker that died after its
    commit left undone. Successors of settled branches that were never dispatched are
    dispatched; dispatched branches never claimed are published again (their message may
    be lost; claiming is conditional, so a duplicate is harmless); the JOIN is made if
    due; and what follows an ended fork is carried on."""
    c = task_steps.c
    with transaction() as conn:
        now = utcnow()
        fork_row = conn.execute(
            select(c.status, c.attempts)
            .where(c.task_id == task_id, c.position == position, c.branch == -1)
            .with_for_update()
        ).first()
        if fork_row is None:
            return [], False, 1
        width = max(int(fork_row.attempts), 1)
        if fork_row.status != "running":
            return [], fork_row.status in STEP_TERMINAL, width
        rows = conn.execute(
            select(c.branch, c.status, c.dispatched_at)
            .where(c.task_id == task_id, c.position == position, c.branch >= 0)
            .order_by(c.branch)
        ).all()
        by_index = {r.branch: r for r in rows}
        owed = [
            r.branch + width if r.branch + width in by_index else None
            for r in rows
            if r.status in STEP_TERMINAL
        ]
        owed += [r.branch for r in rows if r.branch < width]
        missing = sorted({b for b in owed if b is not None and by_index[b].dispatched_at is None})
        if missing:
            _dispatch(conn, task_id, position, missing, now)
        resend = [r.branch for r in rows if r.status == "pending" and r.dispatched_at is not None]
        joined = _join_if_done(conn, steps[position], task_id, position, now)
    return sorted(set(missing) | set(resend)), joined, width


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


# -- recovery ------------------------------------------------------------------------------


def resume(task_id: str, stalled_before: datetime) -> int:
    """Publish again what a stalled task is waiting for; the number of messages sent.

    The step message of the first unfinished step (whose handler runs it, takes it over,
    fills its fork's window, or carries on after it), and a branch message for each
    dispatched branch that made no progress since `stalled_before`."""
    c = task_steps.c
    with transaction() as conn:
        rows = (
            conn.execute(
                select(c.position, c.branch, c.status, c.dispatched_at, c.lease_until, c.updated_at)
                .where(c.task_id == task_id)
                .order_by(c.position, c.branch)
            )
            .mappings()
            .all()
        )
    own = [r for r in rows if r["branch"] < 0]
    if not own:
        return 0
    current = next((r for r in own if r["status"] != "succeeded"), own[-1])
    position = current["position"]
    publish_step(task_id, position)
    sent = 1
    now = utcnow()
    for row in rows:
        stale_branch = (
            row["position"] == position
            and row["branch"] >= 0
            and row["dispatched_at"] is not None
            and row["status"] in ("pending", "running")
            and row["updated_at"] < stalled_before
            and (row["lease_until"] is None or row["lease_until"] < now)
        )
        if stale_branch:
            publish_branch(task_id, position, row["branch"])
            sent += 1
    return sent
