"""The saga sweeper (timer every minute, and POST /admin/jobs/saga-sweeper): finds what a
lost message or a dead worker left behind and finishes it.

1. Tasks older than TASK_MAX_RUNTIME_S that are still queued or running are failed, and
   so refunded; one whose last step had ended (its worker died before the task's own
   commit) ends as that step says (`app.tasks.lifecycle`).
2. Tasks with no progress for PIPELINE_STALL_S (neither the task row nor any of its step
   rows changed) get their pending work published again; redelivery is harmless because
   every runner transition is conditional.
3. Reservations still `reserved` whose task has ended are settled as the task ended
   (succeeded -> confirm, otherwise cancel); a reservation whose task was never written
   is cancelled once it is older than TASK_MAX_RUNTIME_S.
4. Idempotency keys past their 24 h are removed, and ended sessions whose access tokens
   have all expired (`app.identity.ended`).
5. Delayed queue messages that fell due are sent (app.queue.release_due), in case no queue
   function ran to send them.

The counts go in the job's log line (the timer wrapper writes it) and in job_items_total.

Owns: the sweep and what it decides on its own (expiry, left-over reservations, expired
keys and sessions). Never moves a step row: a stalled task is resumed by publishing its work again
(`app.runner.recovery`), for the worker's conditional transitions to decide.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from sqlalchemy import select

from app import idempotency, queue
from app.clock import utcnow
from app.config import get_settings
from app.db.tables import quota_transactions, task_steps, tasks
from app.db.transaction import transaction
from app.identity import ended
from app.observability import logging as applog
from app.observability.metrics import JOB_ITEMS
from app.quota import service as quota
from app.runner.recovery import resume
from app.tasks import lifecycle

log = applog.get_logger("app.runner.sweeper")
JOB = "saga-sweeper"
BATCH = 500


def _expire_overdue() -> int:
    settings = get_settings()
    cutoff = utcnow() - timedelta(seconds=settings.task_max_runtime_s)
    with transaction() as conn:
        ids = (
            conn.execute(
                select(tasks.c.id)
                .where(tasks.c.status.in_(lifecycle.ACTIVE), tasks.c.created_at < cutoff)
                .limit(BATCH)
            )
            .scalars()
            .all()
        )
    message = f"the task ran longer than {settings.task_max_runtime_s} s"
    return sum(
        1 for task_id in ids if lifecycle.finish(task_id, error=lifecycle.step_failed(message))
    )


def _republish_stalled() -> int:
    """The stalled tasks are picked in SQL (no step row moved since the cutoff either), so
    long-running live tasks never fill the batch and hide the stalled ones behind them."""
    cutoff = utcnow() - timedelta(seconds=get_settings().pipeline_stall_s)
    moved_step = (
        select(task_steps.c.id)
        .where(task_steps.c.task_id == tasks.c.id, task_steps.c.updated_at > cutoff)
        .exists()
    )
    with transaction() as conn:
        ids = (
            conn.execute(
                select(tasks.c.id)
                .where(tasks.c.status.in_(lifecycle.ACTIVE), tasks.c.updated_at <= cutoff)
                .where(~moved_step)
                .order_by(tasks.c.updated_at)
                .limit(BATCH)
            )
            .scalars()
            .all()
        )
    return sum(1 for task_id in ids if resume(task_id, cutoff))


def _settle_left_reserved() -> int:
    settings = get_settings()
    orphan_cutoff = utcnow() - timedelta(seconds=settings.task_max_runtime_s)
    qt = quota_transactions.c
    with transaction() as conn:
        rows = conn.execute(
            select(qt.task_id, tasks.c.status, qt.created_at)
            .select_from(quota_transactions.outerjoin(tasks, tasks.c.id == qt.task_id))
            .where(qt.phase == "reserved")
            .where(
                tasks.c.status.in_(lifecycle.TERMINAL)
                | (tasks.c.id.is_(None) & (qt.created_at < orphan_cutoff))
            )
            .limit(BATCH)
        ).all()
    if not rows:
        return 0
    for task_id, status, _created in rows:
        with transaction() as conn:
            if status == "succeeded":
                quota.confirm(task_id, tx=conn)
            else:
                quota.cancel(task_id, tx=conn)
    return len(rows)


def sweep() -> dict[str, int]:
    """One pass; the counts of what it did."""
    report = {
        "expired": _expire_overdue(),
        "republished": _republish_stalled(),
        "settled": _settle_left_reserved(),
        "keys_purged": idempotency.purge_expired(),
        "ended_sessions_purged": ended.purge(),
        # Delayed messages of a backend without native delays, when no worker ran lately.
        "released": queue.release_due(),
    }
    for kind, count in report.items():
        if count:
            JOB_ITEMS.labels(JOB, kind).inc(count)
    applog.log_fields(log, logging.INFO, "saga sweep", **report)
    return report


def run_timer(_event: Any = None) -> dict[str, int]:
    """The timer function's job: the timer wrapper logs and counts the run."""
    return sweep()
