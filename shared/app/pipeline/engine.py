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
        row = _step_row(conn, task_id, position, branch) if task is not None else None
    if task is None or row is None or task["status"] in lifecycle.TERMINAL:
        return
    if task["status"] == "queued":
        lifecycle.mark_running(task_id)
    steps = parse_steps(task["steps"])
    if kind == "step":
        _run_step(task, steps, position, row)
    else:
        _run_branch(task, steps, position, row)


# -- rows ----------------------------------------------------------------------------------


def _step_row(conn: Connection, task_id: str, position: int, branch: int = -1) -> Row | None:
    return (
        conn.execute(
            select(task_steps).where(
                task_steps.c.task_id == task_id,
                task_steps.c.position == position,
                task_steps.c.branch == branch,
            )
        )
        .mappings()
        .first()
    )


def _lease_s(step: HttpCall | SimCall) -> float:
    if isinstance(step, HttpCall):
        return (step.timeout_s + 3) * (1 + step.retries) + LEASE_MARGIN_S
    return step.duration_ms / 1000 + LEASE_MARGIN_S


@dataclass(frozen=True)
class _Claim:
    lease: datetime
    attempts: int  # calls made so far, the one about to be made included when `counted`
    counted: bool
    previous: Any  # the previous step's output, the `previous` of the call


def _claim(row: Row, lease_s: float, limit: int) -> _Claim | None:
    """Take the row for running (pending, or running with no live lease) and count the
    call about to be made, unless `limit` calls were made already; None when not ours."""
    now = utcnow()
    lease = now + timedelta(seconds=lease_s)
    c = task_steps.c
    with transaction() as conn:
        current = conn.execute(
            select(c.status, c.lease_until, c.attempts).where(c.id == row["id"]).with_for_update()
        ).one()
        free = current.lease_until is None or current.lease_until < now
        if not (current.status == "pending" or (current.status == "running" and free)):
            return None
        counted = current.attempts < limit
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
    return _Claim(lease, current.attempts + (1 if counted else 0), counted, previous)


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


def _execute(
    task: Row, row: Row, step: HttpCall | SimCall, step_id: str, item: Any
) -> tuple[Any, _Attempts | None] | None:
    """Claim the row and make the call: (outcome, attempts), or None when not ours to run.
    An `http` call takes its host slot before the claim; with none free the row is left
    as it is and the outcome is Requeue."""
    from app.pipeline import calls, slots

    token = None
    if isinstance(step, HttpCall):
        token = calls.take_slot(step)
        if token is None:
            return calls.Requeue(calls.slot_retry_delay()), None
    lease_s = _lease_s(step)
    # A sim step has no upstream to spare: one whose worker died simply runs again.
    limit = 1 + step.retries if isinstance(step, HttpCall) else 1_000_000
    try:
        claim = _claim(row, lease_s, limit)
    except BaseException:
        if token is not None:
            slots.release(step.host_key, token)  # type: ignore[union-attr]
        raise
    if token is not None and (claim is None or not claim.counted):
        slots.release(step.host_key, token)  # type: ignore[union-attr]
        token = None
    if claim is None:
        return None
    branch = row["branch"] if row["branch"] >= 0 else None
    payload = {
        "task_id": task["id"],
        "step_id": step_id,
        "branch": branch,
        "input": item,
        "previous": claim.previous,
    }
    key = f"{task['id']}:{step_id}:{'-' if branch is None else branch}"
    attempts = _Attempts(row["id"], claim.lease, lease_s)
    if isinstance(step, HttpCall):
        outcome = calls.run_http(step, payload, key, claim.attempts, attempts, token)
    else:
        outcome = calls.run_sim(step, payload)
    return outcome, attempts


def _park(attempts: _Attempts | None) -> None:
    """Give the row back for the re-queued message: pending if it was never called."""
    if attempts is None:  # never claimed
        return
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


def _run_step(task: Row, steps: list[Any], position: int, row: Row) -> None:
    from app.pipeline.calls import Failed, Requeue, Succeeded

    step = steps[position]
    if row["status"] in STEP_TERMINAL:
        _after_step(task["id"], steps, position)
        return
    if isinstance(step, ForkStep):
        _start_fork(task, steps, position)
        return
    result = _execute(task, row, step, step.id, task["input"])
    if result is None:
        return
    outcome, attempts = result
    if isinstance(outcome, Requeue):
        _park(attempts)
        publish_step(task["id"], position, outcome.delay_s)
    elif isinstance(outcome, Succeeded | Failed) and attempts is not None:
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


def _start_fork(task: Row, steps: list[Any], position: int) -> None:
    now = utcnow()
    c = task_steps.c
    with transaction() as conn:
        conn.execute(
            update(task_steps)
            .where(
                c.task_id == task["id"],
                c.position == position,
                c.branch == -1,
                c.status == "pending",
            )
            .values(status="running", started_at=now, heartbeat_at=now, updated_at=now)
        )
    _advance_fork(task["id"], steps, position)


def _advance_fork(
    task_id: str,
    steps: list[Any],
    position: int,
    settle: tuple[_Attempts, Any] | None = None,
) -> None:
    """Under the fork row's lock: record a branch's result (when given), then JOIN if every
    branch settled, else fill the window. Publishes after the commit."""
    fork: ForkStep = steps[position]
    cap = get_settings().pipeline_max_concurrency
    c = task_steps.c
    to_dispatch: list[int] = []
    joined = False
    fork_terminal = False
    with transaction() as conn:
        fork_row = (
            conn.execute(
                select(c.id, c.status)
                .where(c.task_id == task_id, c.position == position, c.branch == -1)
                .with_for_update()
            )
            .mappings()
            .first()
        )
        if fork_row is None:
            return
        now = utcnow()
        if settle is not None:
            attempts, outcome = settle
            moved = conn.execute(
                update(task_steps)
                .where(attempts.owned())
                .values(
                    **_settled_values(outcome), lease_until=None, finished_at=now, updated_at=now
                )
            ).rowcount
            if not moved:  # cancelled or taken over meanwhile: the result is discarded
                return
        if fork_row["status"] != "running":
            fork_terminal = fork_row["status"] in STEP_TERMINAL
        else:
            branches = (
                conn.execute(
                    select(c.id, c.branch, c.status, c.dispatched_at)
                    .where(c.task_id == task_id, c.position == position, c.branch >= 0)
                    .order_by(c.branch)
                )
                .mappings()
                .all()
            )
            if all(b["status"] in STEP_TERMINAL for b in branches):
                # Results are read only here, once: the window never needs them.
                branches = (
                    conn.execute(
                        select(c.branch, c.status, c.output, c.error)
                        .where(c.task_id == task_id, c.position == position, c.branch >= 0)
                        .order_by(c.branch)
                    )
                    .mappings()
                    .all()
                )
                conn.execute(
                    update(task_steps)
                    .where(c.id == fork_row["id"], c.status == "running")
                    .values(**_join(fork, branches), finished_at=now, updated_at=now)
                )
                joined = True
            else:
                in_window = sum(
                    1
                    for b in branches
                    if b["dispatched_at"] is not None and b["status"] not in STEP_TERMINAL
                )
                waiting = [
                    b for b in branches if b["status"] == "pending" and b["dispatched_at"] is None
                ]
                chosen = waiting[: max(cap - in_window, 0)]
                if chosen:
                    conn.execute(
                        update(task_steps)
                        .where(c.id.in_([b["id"] for b in chosen]), c.dispatched_at.is_(None))
                        .values(dispatched_at=now, updated_at=now)
                    )
                to_dispatch = [b["branch"] for b in chosen]
                if settle is None:
                    # A redelivery or a fresh start: the messages of branches dispatched
                    # earlier may have been lost with the worker that was to send them.
                    # Sending them again is harmless, claiming is conditional.
                    to_dispatch += [
                        b["branch"]
                        for b in branches
                        if b["status"] == "pending" and b["dispatched_at"] is not None
                    ]
    for index in to_dispatch:
        publish_branch(task_id, position, index)
    if joined or fork_terminal:
        _after_step(task_id, steps, position)


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


def _run_branch(task: Row, steps: list[Any], position: int, row: Row) -> None:
    from app.pipeline.calls import Failed, Requeue, Succeeded

    fork = steps[position]
    if not isinstance(fork, ForkStep):
        return
    branch = row["branch"]
    if row["status"] in STEP_TERMINAL:
        _advance_fork(task["id"], steps, position)  # the join or the next dispatch may be due
        return
    item = task["input"] if fork.branches is not None else fork.items(task["input"])[branch]
    result = _execute(task, row, fork.branch_step(branch), fork.id, item)
    if result is None:
        return
    outcome, attempts = result
    if isinstance(outcome, Requeue):
        _park(attempts)
        publish_branch(task["id"], position, branch, outcome.delay_s)
    elif isinstance(outcome, Succeeded | Failed) and attempts is not None:
        _advance_fork(task["id"], steps, position, (attempts, outcome))


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
