"""Task status transitions, each one conditional UPDATE that settles the quota saga with it.

queued -> running -> succeeded | failed, and any non-terminal status -> cancelled. The
transition that moves the row is the only one that touches the reservation: `succeed`
confirms, `fail` and `cancel` cancel, in the same transaction, so a task and its quota
never disagree and a repeated call changes nothing. The hook (`app.tasks.hooks`) is an
effect of the transition's transaction (`tx.after_commit`): it runs once the change is
committed, never after a rollback, and a hook that fails is logged without undoing or
failing the transition.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, update

from app.clock import utcnow
from app.db.conflicts import retry_conflicts
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
    return {"code": ErrorCode.PIPELINE_STEP_FAILED.value, "message": message}


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


def mark_running(task_id: str) -> bool:
    """queued -> running, announced with the view read in the same transaction: one
    transaction, not two. It holds only the task row's lock, which only an ending task
    waits for (`finish` reads its view after the commit: it holds the user's quota row)."""
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


def finish(task_id: str, *, output: Any = None, error: dict[str, Any] | None = None) -> bool:
    """Succeed (no error) or fail the task; False when it had already ended."""

    def work() -> bool:
        now = utcnow()
        status = "failed" if error is not None else "succeeded"
        with transaction() as conn:
            row = conn.execute(
                select(tasks.c.status, tasks.c.cost).where(tasks.c.id == task_id).with_for_update()
            ).first()
            if row is None or row.status in TERMINAL:
                return False
            conn.execute(
                update(tasks)
                .where(tasks.c.id == task_id)
                .values(status=status, output=output, error=error, updated_at=now, finished_at=now)
            )
            _close_open_steps(conn, task_id, "cancelled")
            _settle_quota(conn, task_id, row.cost, confirm=error is None)
            conn.after_commit(TASKS_FINISHED.labels(status).inc, task_id=task_id)
            # Read after the commit, in a transaction of its own: this one holds the
            # user's quota row, which every task of that user waits for.
            conn.after_commit(lambda: _announce(task_id), task_id=task_id)
        return True

    return retry_conflicts(work)


def cancel(task_id: str, user_id: str | None = None) -> dict[str, Any]:
    """Cancel a task (of this user, when given) and refund it; the view after the change.
    A terminal task is `409 TASK_NOT_CANCELLABLE`; an unknown one `404 NOT_FOUND`."""

    def work() -> dict[str, Any]:
        now = utcnow()
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
            conn.execute(
                update(tasks)
                .where(tasks.c.id == task_id)
                .values(status="cancelled", updated_at=now, finished_at=now)
            )
            _close_open_steps(conn, task_id, "cancelled")
            _settle_quota(conn, task_id, row.cost, confirm=False)
            view = load_view(conn, task_id)
            assert view is not None
            conn.after_commit(TASKS_FINISHED.labels("cancelled").inc, task_id=task_id)
            conn.after_commit(lambda: hooks.task_updated(view), task_id=task_id)
        return view

    return retry_conflicts(work)
