"""The saga sweeper (timer every minute, and POST /admin/jobs/saga-sweeper): finds what a
lost message or a dead worker left behind and finishes it.

1. Tasks older than TASK_MAX_RUNTIME_S that are still queued or running are failed, and
   so refunded; one whose last step had ended (its worker died before the task's own
   commit) ends as that step says (`app.tasks.lifecycle`).
2. Tasks with no progress for PIPELINE_STALL_S (neither the task row nor any of its step
   rows changed) get their pending work published again, but for a step whose worker still
   holds its lease (in a call longer than the stall); redelivery is harmless because every
   runner transition is conditional. A resumption writes no row, so a backlog larger than
   a run takes (a worker outage) stays stalled, and is served in turn as below.
3. Reservations still `reserved` whose task has ended are settled as the task ended
   (succeeded -> confirm, otherwise cancel); a reservation whose task was never written
   is cancelled once it is older than TASK_MAX_RUNTIME_S. `settled` counts the ones this
   pass settled, not those something else settled after the pass read them.
4. Idempotency keys past their 24 h are removed, and ended sessions whose access tokens
   have all expired (`app.identity.ended`).
5. Delayed queue messages that fell due are sent (app.queue.release_due), in case no queue
   function ran to send them.

Stages 1 to 3 each take up to BATCH rows a run, from the row where their last run stopped
round to the oldest (`app.runner.rotation`): a row stays in its stage's set until it is
done, so rows that keep failing (a settle that raises every time, a lock met every time),
more than a batch of them, would otherwise fill every run and hold newer rows back for
good; in turn each is tried again and the newer are reached.

A run is bounded: it takes no task once RUN_BUDGET_S are spent (less when the invocation it
runs in ends sooner, its timer's or an admin's: `app.clock.run_budget_s`, as
order-reconcile's), and each stage has its share of it: what is left of the budget when the
stage starts, divided by the stages still to come (the last three, one call each, counted
as one). A stage takes its first task whenever it starts within the budget, and no task
after its share is spent (`stopped_early` in the report). So a backlog (after a worker
outage) no longer lets the expiry hold the whole run while the settlements, the purges and
the release of delayed messages wait for a run the platform does not kill first: each stage
gets its turn every minute.

The counts go in the job's log line (the timer wrapper writes it) and in job_items_total.
One task whose expiry, resumption or settlement fails (anything raised) is logged at ERROR
with its id and counted as `failed`; the pass goes on with the others and with its later
stages, so one task cannot stop the sweep of every other, nor the release of delayed
messages. It is picked again by the next pass. A stage that fails as a whole (its query, a
purge, the release: the database or the queue down) is logged at ERROR by its error's code
or class, and the later stages still run; the run then ends with SweepIncomplete, whose
report holds every stage's count and `failed_stages` (the stage's count's name -> the
error's code or class), so the platform records a failed run and an admin's run is
answered 503 and recorded with that report (`app.api.admin_jobs`).

Owns: the sweep and what it decides on its own (expiry, left-over reservations, expired
keys and sessions). Never moves a step row: a stalled task is resumed by publishing its work again
(`app.runner.recovery`), for the worker's conditional transitions to decide.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select

from app import idempotency, queue
from app.clock import run_budget_s, utcnow
from app.config import get_settings
from app.db.tables import quota_transactions, task_steps, tasks
from app.db.transaction import transaction
from app.errors import AppError, ErrorCode
from app.identity import ended
from app.observability import logging as applog
from app.observability.metrics import JOB_ITEMS
from app.quota import service as quota
from app.runner import rotation
from app.runner.recovery import resume
from app.tasks import lifecycle

log = applog.get_logger("app.runner.sweeper")
JOB = "saga-sweeper"
BATCH = 500
# A run takes no task after this: the timer fires every minute, and its last turn and
# report (AFTER_LAST_TURN_S) end before the next run starts and well within the function's
# 120 s. An admin's run is held to the same.
RUN_BUDGET_S = 45.0
# What a run may still spend once its last check passed: one turn (a task's few short
# transactions and, for a resumption, its messages' invokes of up to 5 s each; or one of
# the single-call stages), then the report, its log line and the metrics push.
AFTER_LAST_TURN_S = 15.0
# The counts of the report, each a job_items_total kind.
COUNTS = (
    "expired",
    "republished",
    "settled",
    "keys_purged",
    "ended_sessions_purged",
    "released",
    "failed",
)


class SweepIncomplete(AppError):
    """A stage of the run failed as a whole; the others ran. 503 to an admin; `report` is
    the run's, `failed_stages` in it naming what failed by its error's code or class."""

    def __init__(self, report: dict[str, Any]) -> None:
        super().__init__(
            ErrorCode.SERVICE_UNAVAILABLE, f"{JOB} stages failed; the run's report: {report}"
        )
        self.report = report


@dataclass
class _Failures:
    count: int = 0


@dataclass
class _Turns:
    """When the run stops taking tasks, when the current stage's share ends (both
    time.monotonic()), and whether a stage stopped short of what it had found."""

    stop_at: float
    share_ends: float = 0.0
    stopped_early: bool = False

    def begin_stage(self, stages_left: int) -> bool:
        """Whether the stage may start (the budget is not spent), fixing its share: what is
        left of the budget divided by the stages still to come, this one included."""
        now = time.monotonic()
        if now >= self.stop_at:
            self.stopped_early = True
            return False
        self.share_ends = now + (self.stop_at - now) / max(stages_left, 1)
        return True

    def may_take_another(self) -> bool:
        if time.monotonic() < self.share_ends:
            return True
        self.stopped_early = True
        return False


def _each(
    stage: str,
    task_ids: Iterable[str],
    action: Callable[[str], bool | int],
    failed: _Failures,
    turns: _Turns,
) -> int:
    """`action` on each task; how many it did something for (a true or non-zero answer).
    One that raises is logged and counted in `failed`, and the others still have their turn.
    The first task is always taken (the stage started within the budget); the next ones
    while the stage's share lasts."""
    done = 0
    for index, task_id in enumerate(task_ids):
        if index and not turns.may_take_another():
            break
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


def _in_turn(
    order: rotation.Rotation,
    at: dict[str, datetime],
    action: Callable[[str], bool | int],
    failed: _Failures,
    turns: _Turns,
) -> int:
    """`_each` on the tasks of `at` (each with its time in the stage's order), keeping the
    place of the last one taken for the stage's next run to go on from."""
    taken: list[str] = []

    def take(task_id: str) -> bool | int:
        taken.append(task_id)
        return action(task_id)

    try:
        return _each(order.stage, at, take, failed, turns)
    finally:
        if taken:
            rotation.keep_place(order, rotation.Place(at[taken[-1]], taken[-1]))


def _expire_overdue(failed: _Failures, turns: _Turns) -> int:
    """From where the last run stopped, round to the oldest (`app.runner.rotation`), so that
    overdue tasks whose expiry keeps failing, more than a batch, hold no newer one back."""
    settings = get_settings()
    cutoff = utcnow() - timedelta(seconds=settings.task_max_runtime_s)
    overdue = (
        select(tasks.c.id, tasks.c.created_at)
        .where(tasks.c.status.in_(lifecycle.ACTIVE), tasks.c.created_at < cutoff)
        .order_by(tasks.c.created_at, tasks.c.id)
    )
    place = rotation.last_place(rotation.OVERDUE)
    with transaction() as conn:
        rows = rotation.in_turn(conn, overdue, tasks.c.created_at, tasks.c.id, place, BATCH)
    error = lifecycle.step_failed(f"the task ran longer than {settings.task_max_runtime_s} s")
    return _in_turn(
        rotation.OVERDUE,
        {row.id: row.created_at for row in rows},
        lambda task_id: lifecycle.finish(task_id, error=error),
        failed,
        turns,
    )


def _republish_stalled(failed: _Failures, turns: _Turns) -> int:
    """The stalled tasks are picked in SQL (no step row moved since the cutoff either), so
    long-running live tasks never fill the batch and hide the stalled ones behind them; from
    where the last run stopped, round to the oldest (`app.runner.rotation`), so that a
    backlog larger than a run takes is published again in turn, not its oldest every run."""
    cutoff = utcnow() - timedelta(seconds=get_settings().pipeline_stall_s)
    moved_step = (
        select(task_steps.c.id)
        .where(task_steps.c.task_id == tasks.c.id, task_steps.c.updated_at > cutoff)
        .exists()
    )
    stalled = (
        select(tasks.c.id, tasks.c.updated_at)
        .where(tasks.c.status.in_(lifecycle.ACTIVE), tasks.c.updated_at <= cutoff)
        .where(~moved_step)
        .order_by(tasks.c.updated_at, tasks.c.id)
    )
    place = rotation.last_place(rotation.STALLED)
    with transaction() as conn:
        rows = rotation.in_turn(conn, stalled, tasks.c.updated_at, tasks.c.id, place, BATCH)
    return _in_turn(
        rotation.STALLED,
        {row.id: row.updated_at for row in rows},
        lambda task_id: resume(task_id, cutoff),
        failed,
        turns,
    )


def _settle_left_reserved(failed: _Failures, turns: _Turns) -> int:
    """From where the last run stopped, round to the oldest (`app.runner.rotation`), so that
    reservations whose settle keeps failing, more than a batch, hold no newer one back."""
    settings = get_settings()
    orphan_cutoff = utcnow() - timedelta(seconds=settings.task_max_runtime_s)
    qt = quota_transactions.c
    left = (
        select(qt.task_id, qt.created_at, tasks.c.status)
        .select_from(quota_transactions.outerjoin(tasks, tasks.c.id == qt.task_id))
        .where(qt.phase == "reserved")
        .where(
            tasks.c.status.in_(lifecycle.TERMINAL)
            | (tasks.c.id.is_(None) & (qt.created_at < orphan_cutoff))
        )
        .order_by(qt.created_at, qt.task_id)
    )
    place = rotation.last_place(rotation.LEFT_RESERVED)
    with transaction() as conn:
        rows = rotation.in_turn(conn, left, qt.created_at, qt.task_id, place, BATCH)
    ended_as = {row.task_id: row.status for row in rows}

    def settle(task_id: str) -> bool:
        """Whether this call settled it: the task's own end (or another pass) may have
        settled it since it was read, and that one is not counted again here."""
        with transaction() as conn:
            if ended_as[task_id] == "succeeded":
                return quota.confirm(task_id, tx=conn).changed
            return quota.cancel(task_id, tx=conn).changed

    created_at = {row.task_id: row.created_at for row in rows}
    return _in_turn(rotation.LEFT_RESERVED, created_at, settle, failed, turns)


def sweep(budget_s: float | None = None) -> dict[str, Any]:
    """One pass within `budget_s` (see the module doc); the counts of what it did, and
    `stopped_early` when a stage left tasks it had found for the next run. Raises
    SweepIncomplete, carrying that report, when a stage failed as a whole. Without a
    `budget_s`, RUN_BUDGET_S, or less when the invocation it runs in (its timer's, an
    admin's) ends sooner, so that the last turn taken ends, and the run reports, before
    the platform ends it."""
    if budget_s is None:
        budget_s = run_budget_s(RUN_BUDGET_S, AFTER_LAST_TURN_S)
    failed = _Failures()
    turns = _Turns(stop_at=time.monotonic() + budget_s)
    # The stages that take task after task, then the single-call ones, which share one
    # turn: each of those is bounded on its own (up to 1000 rows; the messages now due).
    by_task: list[tuple[str, Callable[[], int]]] = [
        ("expired", lambda: _expire_overdue(failed, turns)),
        ("republished", lambda: _republish_stalled(failed, turns)),
        ("settled", lambda: _settle_left_reserved(failed, turns)),
    ]
    single_calls: list[tuple[str, Callable[[], int]]] = [
        ("keys_purged", idempotency.purge_expired),
        ("ended_sessions_purged", ended.purge),
        # Delayed messages of a backend without native delays, when no worker ran lately.
        ("released", queue.release_due),
    ]
    report: dict[str, Any] = dict.fromkeys(COUNTS, 0)
    failed_stages: dict[str, str] = {}

    def run_stage(kind: str, stage: Callable[[], int]) -> None:
        try:
            report[kind] = stage()
        except Exception as error:  # noqa: BLE001 - one stage's failure stops no other stage
            # By code or class only: an unknown exception's text may carry anything.
            failed_stages[kind] = (
                error.code.value if isinstance(error, AppError) else type(error).__name__
            )
            applog.log_fields(
                log, logging.ERROR, "sweep stage failed", stage=kind, error=failed_stages[kind]
            )

    shares = len(by_task) + 1  # the single-call stages have one share between them
    for index, (kind, stage) in enumerate(by_task):
        if turns.begin_stage(shares - index):
            run_stage(kind, stage)
    if turns.begin_stage(1):
        for kind, stage in single_calls:
            run_stage(kind, stage)
    report["failed"] = failed.count
    report["stopped_early"] = turns.stopped_early
    for kind in COUNTS:
        if report[kind]:
            JOB_ITEMS.labels(JOB, kind).inc(report[kind])
    if failed_stages:
        report["failed_stages"] = failed_stages
    applog.log_fields(log, logging.INFO, "saga sweep", **report)
    if failed_stages:
        raise SweepIncomplete(report)
    return report


def run_timer(_event: Any = None) -> dict[str, Any]:
    """The timer function's job, bounded by its invocation as `sweep` is; the timer wrapper
    logs and counts the run."""
    return sweep()
