"""The pipeline engine: one queue message runs one step or one fork branch.

Messages on PIPELINE_QUEUE: `{"kind": "step", "task_id", "step": position}` and
`{"kind": "branch", "task_id", "step": position, "branch": index}`. All state lives in
`task_steps`; every transition is a conditional UPDATE, so a message delivered twice, or
re-published by the sweeper, never does a thing twice:

- a step or branch runs only after claiming its row (pending, or running with no live
  lease); the lease value it set is its fencing token, so a worker whose row was taken
  over or cancelled meanwhile discards what it got;
- a fork dispatches min(N, PIPELINE_MAX_CONCURRENCY) branches; each branch that settles
  dispatches the next ones, in the same transaction that records its result, under the
  fork row's lock (a sliding window across function instances);
- the JOIN is the UPDATE that moves the fork row from running to succeeded/failed, made by
  the settle that finds every branch settled: exactly once;
- a message for work that already ended re-does only what follows it (publishing the next
  step, finishing the task), which is how a worker that died after its commit is healed.

Messages are published after the commit that makes them valid. A message lost in between
leaves a row with no progress, which the saga sweeper finds and publishes again.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, case, select, update
from sqlalchemy.engine import Connection

from app import queue
from app.config import get_settings
from app.db import transaction
from app.db.tables import task_steps, tasks
from app.db.types import utcnow
from app.observability import logging as applog
from app.pipeline.definition import ForkStep, HttpCall, SimCall, parse_steps
from app.tasks import lifecycle
from app.tasks.lifecycle import step_failed

log = applog.get_logger("app.pipeline.engine")

STEP_TERMINAL = ("succeeded", "failed", "cancelled")
LEASE_MARGIN_S = 30.0
Row = Mapping[Any, Any]


# -- messages ------------------------------------------------------------------------------


def publish_step(task_id: str, position: int, delay_s: float = 0) -> None:
    message = {"kind": "step", "task_id": task_id, "step": position}
    queue.publish(get_settings().pipeline_queue, message, delay_s=delay_s)


def publish_branch(task_id: str, position: int, branch: int, delay_s: float = 0) -> None:
    message = {"kind": "branch", "task_id": task_id, "step": position, "branch": branch}
    queue.publish(get_settings().pipeline_queue, message, delay_s=delay_s)


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
    assert isinstance(task_id, str) and isinstance(position, int) and isinstance(branch, int)
    # One transaction reads the task and its row and, when there is a call to make, claims
    # the row: the common path of a message costs one commit before the call.
    claim: _Claim | float | None = None
    with transaction() as conn:
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
        steps = parse_steps(task["steps"])
        if not 0 <= position < len(steps):
            return
        row = _step_row(conn, task_id, position, branch, lock=True)
        if row is None:
            return
        work = _work_of(steps[position], task["input"], branch)
        if work is not None and row["status"] not in STEP_TERMINAL:
            claim = _claim(conn, row, work[0])
    if task["status"] == "queued":
        lifecycle.mark_running(task_id)
    if row["status"] in STEP_TERMINAL:
        if branch < 0:
            _after_step(task_id, steps, position)
        else:  # the JOIN or the next dispatch may still be due
            _advance_fork(task_id, steps, position)
    elif work is None:
        if isinstance(steps[position], ForkStep) and branch < 0:
            _start_fork(task_id, steps, position)
    elif isinstance(claim, float):  # no free host slot: try again shortly
        _publish_again(task_id, position, branch, claim)
    elif claim is not None:
        _run(task, steps, position, row, work, claim)


def _publish_again(task_id: str, position: int, branch: int, delay_s: float) -> None:
    if branch < 0:
        publish_step(task_id, position, delay_s)
    else:
        publish_branch(task_id, position, branch, delay_s)


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
    conn: Connection, task_id: str, position: int, branch: int = -1, *, lock: bool = False
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


def _claim(conn: Connection, row: Row, step: HttpCall | SimCall) -> _Claim | float | None:
    """Take the (locked) row for running when it is pending, or running with no live
    lease, and count the call about to be made unless the step's calls are used up. An
    `http` call takes its host slot first: with none free nothing changes and the answer
    is the delay to re-queue with. None when the row is not ours."""
    from app.pipeline import calls, slots

    now = utcnow()
    free = row["lease_until"] is None or row["lease_until"] < now
    if not (row["status"] == "pending" or (row["status"] == "running" and free)):
        return None
    # A sim step has no upstream to spare: one whose worker died simply runs again.
    limit = 1 + step.retries if isinstance(step, HttpCall) else 1_000_000
    counted = row["attempts"] < limit
    slot = None
    if counted and isinstance(step, HttpCall):
        slot = calls.take_slot(step)
        if slot is None:
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
        previous = None
        if row["position"] > 0:
            before = _step_row(conn, row["task_id"], row["position"] - 1)
            previous = before["output"] if before is not None else None
    except BaseException:
        if slot is not None and isinstance(step, HttpCall):
            slots.release(step.host_key, slot)
        raise
    attempts = row["attempts"] + (1 if counted else 0)
    return _Claim(lease, lease_s, attempts, counted, previous, slot)


class _Attempts:
    """Counts each further upstream call in the row, fenced by the lease we hold."""

    def __init__(self, row_id: str, lease: datetime, lease_s: float) -> None:
        self.row_id = row_id
        self.lease = lease
        self.lease_s = lease_s

    def __call__(self) -> bool:
        now = utcnow()
        renewed = now + timedelta(seconds=self.lease_s)
        c = task_steps.c
        with transaction() as conn:
            moved = conn.execute(
                update(task_steps)
                .where(c.id == self.row_id, c.status == "running", c.lease_until == self.lease)
                .values(
                    attempts=c.attempts + 1, lease_until=renewed, heartbeat_at=now, updated_at=now
                )
            ).rowcount
        if moved:
            self.lease = renewed
        return bool(moved)

    def owned(self) -> Any:
        c = task_steps.c
        return and_(c.id == self.row_id, c.status == "running", c.lease_until == self.lease)


def _run(
    task: Row,
    steps: list[Any],
    position: int,
    row: Row,
    work: tuple[HttpCall | SimCall, Any],
    claim: _Claim,
) -> None:
    """Make the claimed call, then settle the row (a branch settles under its fork's lock
    and moves the window) or park it for a re-queued message."""
    from app.pipeline import calls

    step, item = work
    step_id = steps[position].id
    branch = row["branch"] if row["branch"] >= 0 else None
    payload = {
        "task_id": task["id"],
        "step_id": step_id,
        "branch": branch,
        "input": item,
        "previous": claim.previous,
    }
    key = f"{task['id']}:{step_id}:{'-' if branch is None else branch}"
    attempts = _Attempts(row["id"], claim.lease, claim.lease_s)
    if isinstance(step, HttpCall):
        outcome = calls.run_http(step, payload, key, claim.attempts, attempts, claim.slot)
    else:
        outcome = calls.run_sim(step, payload)
    if isinstance(outcome, calls.Requeue):
        _park(attempts)
        _publish_again(task["id"], position, row["branch"], outcome.delay_s)
    elif isinstance(outcome, calls.Abandoned):
        return
    elif branch is not None:
        _advance_fork(task["id"], steps, position, (attempts, outcome, branch))
    else:
        now = utcnow()
        with transaction() as conn:
            moved = conn.execute(
                update(task_steps)
                .where(attempts.owned())
                .values(
                    **_settled_values(outcome), lease_until=None, finished_at=now, updated_at=now
                )
            ).rowcount
        if moved:
            _after_step(task["id"], steps, position)


def _park(attempts: _Attempts) -> None:
    """Give the row back for the re-queued message: pending if it was never called."""
    now = utcnow()
    c = task_steps.c
    with transaction() as conn:
        conn.execute(
            update(task_steps)
            .where(attempts.owned())
            .values(
                status=case((c.attempts == 0, "pending"), else_="running"),
                lease_until=None,
                updated_at=now,
            )
        )


def _settled_values(outcome: Any) -> dict[str, Any]:
    from app.pipeline.calls import Succeeded

    if isinstance(outcome, Succeeded):
        return {"status": "succeeded", "output": outcome.output, "error": None}
    return {"status": "failed", "output": None, "error": outcome.error}


# -- plain steps ---------------------------------------------------------------------------


def _after_step(task_id: str, steps: list[Any], position: int) -> None:
    """What follows a settled step: the next step, or the end of the task."""
    with transaction() as conn:
        row = _step_row(conn, task_id, position)
        following = _step_row(conn, task_id, position + 1) if position + 1 < len(steps) else None
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

    def start() -> list[int] | None:
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
        return list(first)

    started = lifecycle.retry_conflicts(start)
    if started is None:
        _advance_fork(task_id, steps, position)
        return
    for index in started:
        publish_branch(task_id, position, index)
    if not started:  # a fork over no items: JOIN at once
        _advance_fork(task_id, steps, position)


def _dispatch(conn: Connection, task_id: str, position: int, branches: list[int], now: Any) -> None:
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


def _advance_fork(
    task_id: str,
    steps: list[Any],
    position: int,
    settle: tuple[_Attempts, Any, int] | None = None,
) -> None:
    """Record a settled branch and dispatch its successor, JOINing when it was the last;
    without `settle`, heal the fork (see `_heal_fork`). Publishes after the commit."""
    done: tuple[list[int], bool] | None
    if settle is None:
        done = lifecycle.retry_conflicts(lambda: _heal_fork(task_id, steps, position))
    else:
        done = lifecycle.retry_conflicts(lambda: _settle_branch(task_id, steps, position, settle))
    if done is None:
        return
    to_dispatch, carry_on = done
    for index in to_dispatch:
        publish_branch(task_id, position, index)
    if carry_on:
        _after_step(task_id, steps, position)


def _settle_branch(
    task_id: str, steps: list[Any], position: int, settle: tuple[_Attempts, Any, int]
) -> tuple[list[int], bool] | None:
    """The sliding window without a shared lock: branch i, settling, dispatches branch
    i + width (the width the fork started with), so each branch has exactly one
    dispatcher and at most `width` are ever dispatched and unsettled. Only a branch with
    no successor takes the fork row's lock, to see whether it is the last: that settle
    makes the JOIN. None when the result was not ours to record."""
    attempts, outcome, branch = settle
    c = task_steps.c
    with transaction() as conn:
        now = utcnow()
        moved = conn.execute(
            update(task_steps)
            .where(attempts.owned())
            .values(**_settled_values(outcome), lease_until=None, finished_at=now, updated_at=now)
        ).rowcount
        if not moved:  # cancelled or taken over meanwhile: the result is discarded
            return None
        width = conn.execute(
            select(c.attempts).where(c.task_id == task_id, c.position == position, c.branch == -1)
        ).scalar_one()
        successor = branch + max(int(width), 1)
        dispatched = conn.execute(
            update(task_steps)
            .where(
                c.task_id == task_id,
                c.position == position,
                c.branch == successor,
                c.dispatched_at.is_(None),
            )
            .values(dispatched_at=now, updated_at=now)
        ).rowcount
        if dispatched:
            return [successor], False
        joined = _join_if_done(conn, steps[position], task_id, position, now)
    return [], joined


def _join_if_done(conn: Connection, fork: ForkStep, task_id: str, position: int, now: Any) -> bool:
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


def _heal_fork(task_id: str, steps: list[Any], position: int) -> tuple[list[int], bool]:
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
            return [], False
        if fork_row.status != "running":
            return [], fork_row.status in STEP_TERMINAL
        width = max(int(fork_row.attempts), 1)
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
    return sorted(set(missing) | set(resend)), joined


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
