"""Task status transitions, each one conditional UPDATE that settles the quota saga with it.

queued -> running -> succeeded | failed, and any non-terminal status -> cancelled. The
transition that moves the row is the only one that touches the reservation: `succeed`
confirms, `fail` and `cancel` cancel, in the same transaction, so a task and its quota
never disagree and a repeated call changes nothing.

A task whose last step has ended is decided, though its end is a commit of its own after
the step's: every transition reads that step's row under the task's lock (and the step's,
so a result being committed is waited for), and a decided task ends as its last step says.
A cancel or the sweeper's expiry in that gap ends the task succeeded or failed (the cancel
answers 409 TASK_NOT_CANCELLABLE), never refunding work whose result is in its steps.

The hook (`app.tasks.hooks`) is an effect of the transition's transaction
(`tx.after_commit`): it runs once the change is committed, never after a rollback, and a
hook that fails is logged without undoing or failing the transition.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update

from app import json_values
from app.clock import utcnow
from app.db.conflicts import Tries, retry_conflicts
from app.db.tables import task_steps, tasks
from app.db.transaction import Transaction, transaction
from app.errors import AppError, ErrorCode
from app.observability.metrics import TASKS_FINISHED
from app.quota import service as quota
from app.tasks import hooks
from app.tasks.views import load_view

TERMINAL = ("succeeded", "failed", "cancelled")
ACTIVE = ("queued", "running")


def step_failed(message: str) -> dict[str, str]:
    """A failed step's or task's error; its message at most ERROR_MESSAGE_MAX_BYTES, which
    the bound on a task's view counts on (app.storage.shares)."""
    data = message.encode()
    if len(data) > json_values.ERROR_MESSAGE_MAX_BYTES:
        message = data[: json_values.ERROR_MESSAGE_MAX_BYTES].decode(errors="ignore")
    return {"code": ErrorCode.PIPELINE_STEP_FAILED.value, "message": message}


def failed_step_error(step_id: str, error: Mapping[str, Any] | None) -> dict[str, str]:
    """The task's error when step `step_id` failed with `error`."""
    message = (error or {}).get("message") or "it failed"
    return step_failed(f"step {step_id!r} failed: {message}")


@dataclass(frozen=True)
class _Ending:
    status: str  # succeeded | failed | cancelled
    output: Any = None
    error: dict[str, Any] | None = None


def _decided(conn: Transaction, task_id: str) -> _Ending | None:
    """How the task's last step ended, when it has: its ending is the task's. Locked, so a
    worker's result for it that is being committed now is waited for and seen."""
    c = task_steps.c
    row = conn.execute(
        select(c.step_id, c.status, c.output, c.error)
        .where(c.task_id == task_id, c.branch == -1)
        .order_by(c.position.desc())
        .limit(1)
        .with_for_update()
    ).first()
    if row is None or row.status not in ("succeeded", "failed"):
        return None
    if row.status == "succeeded":
        return _Ending("succeeded", output=row.output)
    return _Ending("failed", error=failed_step_error(row.step_id, row.error))


def _end(conn: Transaction, task_id: str, cost: int, ending: _Ending) -> None:
    """The task's row to its ending, its open steps cancelled, its quota settled."""
    now = utcnow()
    conn.execute(
        update(tasks)
        .where(tasks.c.id == task_id)
        .values(
            status=ending.status,
            output=ending.output,
            error=ending.error,
            updated_at=now,
            finished_at=now,
        )
    )
    _close_open_steps(conn, task_id, "cancelled")
    _settle_quota(conn, task_id, cost, confirm=ending.status == "succeeded")
    conn.after_commit(TASKS_FINISHED.labels(ending.status).inc, task_id=task_id)


def _settle_quota(conn: Transaction, task_id: str, cost: int, confirm: bool) -> None:
    if cost <= 0:
        return
    if confirm:
        quota.confirm(task_id, tx=conn)
    else:
        quota.cancel(task_id, tx=conn)


def _close_open_steps(conn: Transaction, task_id: str, status: str) -> None:
    now = utcnow()
    conn.execute(
        update(task_steps)
        .where(task_steps.c.task_id == task_id, task_steps.c.status.in_(("pending", "running")))
        .values(status=status, lease_until=None, finished_at=now, updated_at=now)
    )


def _announce(task_id: str) -> None:
    with transaction() as conn:
        view = load_view(conn, task_id)
    if view is not None:
        hooks.task_updated(view)


def mark_running(task_id: str, tries: Tries | None = None) -> bool:
    """queued -> running, announced with the view read in the same transaction: one
    transaction, not two. It holds only the task row's lock, which only an ending task
    waits for (`finish` reads its view after the commit: it holds the user's quota row).
    Tried again on a lock conflict, while that fits in the invocation (and `tries`, the
    caller's, allow): the worker has claimed the step by then, and failing would give the
    claim back for a redelivery."""

    def work() -> bool:
        now = utcnow()
        with transaction() as conn:
            moved = conn.execute(
                update(tasks)
                .where(tasks.c.id == task_id, tasks.c.status == "queued")
                .values(status="running", updated_at=now)
            ).rowcount
            view = load_view(conn, task_id) if moved else None
            if view is not None:
                conn.after_commit(lambda: hooks.task_updated(view), task_id=task_id)
        return bool(moved)

    return retry_conflicts(work, tries=tries)


def finish(task_id: str, *, output: Any = None, error: dict[str, Any] | None = None) -> bool:
    """Succeed (no error) or fail the task, unless its last step decided otherwise (see
    the module doc); False when it had already ended."""

    def work() -> bool:
        with transaction() as conn:
            row = conn.execute(
                select(tasks.c.status, tasks.c.cost).where(tasks.c.id == task_id).with_for_update()
            ).first()
            if row is None or row.status in TERMINAL:
                return False
            asked = _Ending("failed" if error is not None else "succeeded", output, error)
            _end(conn, task_id, row.cost, _decided(conn, task_id) or asked)
            # Read after the commit, in a transaction of its own: this one holds the
            # user's quota row, which every task of that user waits for.
            conn.after_commit(lambda: _announce(task_id), task_id=task_id)
        return True

    return retry_conflicts(work)


def cancel(task_id: str, user_id: str | None = None) -> dict[str, Any]:
    """Cancel a task (of this user, when given) and refund it; the view after the change.
    A terminal task is `409 TASK_NOT_CANCELLABLE`; so is one its last step decided, which
    this call ends as that step says; an unknown one `404 NOT_FOUND`."""

    def work() -> dict[str, Any]:
        with transaction() as conn:
            query = select(tasks.c.status, tasks.c.cost).where(tasks.c.id == task_id)
            if user_id is not None:
                query = query.where(tasks.c.user_id == user_id)
            row = conn.execute(query.with_for_update()).first()
            if row is None:
                raise AppError(ErrorCode.NOT_FOUND, "Task not found.")
            if row.status in TERMINAL:
                raise AppError(
                    ErrorCode.TASK_NOT_CANCELLABLE, f"The task has already {row.status}."
                )
            _end(conn, task_id, row.cost, _decided(conn, task_id) or _Ending("cancelled"))
            view = load_view(conn, task_id)
            assert view is not None
            conn.after_commit(lambda: hooks.task_updated(view), task_id=task_id)
        return view

    view = retry_conflicts(work)
    if view["status"] != "cancelled":  # decided by its last step, and ended so: committed
        raise AppError(ErrorCode.TASK_NOT_CANCELLABLE, f"The task has already {view['status']}.")
    return view
