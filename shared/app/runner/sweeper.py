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
   is cancelled once it is older than TASK_MAX_RUNTIME_S. `settled` counts the ones this
   pass settled, not those something else settled after the pass read them.
4. Idempotency keys past their 24 h are removed, and ended sessions whose access tokens
   have all expired (`app.identity.ended`).
5. Delayed queue messages that fell due are sent (app.queue.release_due), in case no queue
   function ran to send them.

The counts go in the job's log line (the timer wrapper writes it) and in job_items_total.
One task whose expiry, resumption or settlement fails (anything raised) is logged at ERROR
with its id and counted as `failed`; the pass goes on with the others and with its later
stages, so one task cannot stop the sweep of every other, nor the release of delayed
messages. It is picked again by the next pass.

Owns: the sweep and what it decides on its own (expiry, left-over reservations, expired
keys and sessions). Never moves a step row: a stalled task is resumed by publishing its work again
(`app.runner.recovery`), for the worker's conditional transitions to decide.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
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


@dataclass
class _Failures:
    count: int = 0


def _each(
    stage: str, task_ids: Iterable[str], action: Callable[[str], bool | int], failed: _Failures
) -> int:
    """`action` on each task; how many it did something for (a true or non-zero answer).
    One that raises is logged and counted in `failed`, and the others still have their turn."""
    done = 0
    for task_id in task_ids:
        try:
            done += bool(action(task_id))
        except Exception as error:  # noqa: BLE001 - one task's failure stops no other's sweep
            failed.count += 1
            # The type only: an unknown exception's text may carry anything (SQL, parameters).
            applog.log_fields(
                log,
                logging.ERROR,
                "sweep of a task failed",
                stage=stage,
                task_id=task_id,
                error=type(error).__name__,
            )
    return done


def _expire_overdue(failed: _Failures) -> int:
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
    error = lifecycle.step_failed(f"the task ran longer than {settings.task_max_runtime_s} s")
    return _each("expire", ids, lambda task_id: lifecycle.finish(task_id, error=error), failed)


def _republish_stalled(failed: _Failures) -> int:
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
    return _each("republish", ids, lambda task_id: resume(task_id, cutoff), failed)


def _settle_left_reserved(failed: _Failures) -> int:
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
    ended_as = {task_id: status for task_id, status, _created in rows}

    def settle(task_id: str) -> bool:
        """Whether this call settled it: the task's own end (or another pass) may have
        settled it since it was read, and that one is not counted again here."""
        with transaction() as conn:
            if ended_as[task_id] == "succeeded":
                return quota.confirm(task_id, tx=conn).changed
            return quota.cancel(task_id, tx=conn).changed

    return _each("settle", ended_as, settle, failed)


def sweep() -> dict[str, int]:
    """One pass; the counts of what it did."""
    failed = _Failures()
    report = {
        "expired": _expire_overdue(failed),
        "republished": _republish_stalled(failed),
        "settled": _settle_left_reserved(failed),
        "keys_purged": idempotency.purge_expired(),
        "ended_sessions_purged": ended.purge(),
        # Delayed messages of a backend without native delays, when no worker ran lately.
        "released": queue.release_due(),
    }
    report["failed"] = failed.count
    for kind, count in report.items():
        if count:
            JOB_ITEMS.labels(JOB, kind).inc(count)
    applog.log_fields(log, logging.INFO, "saga sweep", **report)
    return report


def run_timer(_event: Any = None) -> dict[str, int]:
    """The timer function's job: the timer wrapper logs and counts the run."""
    return sweep()
