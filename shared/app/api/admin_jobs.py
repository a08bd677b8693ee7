"""POST /admin/jobs/{name}: run a maintenance job now, as its timer would.

The registry maps a job name to "module:function"; the module is imported only when its
job runs, so this function's cold start stays small. Each job takes no arguments and
returns a dict of counts; the answer is `{"job": name, ...counts}`. A job that bounds its
run by when its invocation ends (saga-sweeper, order-reconcile, cos-cleanup:
`app.clock.run_budget_s`) is bounded by this function's invocation, as by its timer's. A
job of which another run is live (cos-cleanup, invite-refill: app.db.runs) answers 503
SERVICE_UNAVAILABLE, as does one a dependency stopped half way. A run is recorded as the
admin's once it has ended (app.audit): with its report, or as failed, with what it had done
when its error says; a run refused as busy, which ran nothing, is not.
"""

from __future__ import annotations

import importlib
import logging
from typing import Any

from app.audit import Actor
from app.errors import AppError, ErrorCode, RunBusy
from app.events.timer import run_counted
from app.http import Auth, Request, Router
from app.observability import logging as applog

log = applog.get_logger("app.api.admin_jobs")
router = Router(tags=("admin",))

JOBS: dict[str, str] = {
    "saga-sweeper": "app.runner.sweeper:sweep",
    "invite-refill": "app.identity.invites:refill_job",
    "secrets-rekey": "app.vault.store:rekey",
    "order-reconcile": "app.payments.reconcile:run",
    "cos-cleanup": "app.storage.cleanup:run",
}


def run_job(name: str, actor: Actor) -> dict[str, Any]:
    target = JOBS.get(name)
    if target is None:
        raise AppError(ErrorCode.NOT_FOUND, f"No job named {name!r}.")
    module_name, _, function_name = target.partition(":")
    job = getattr(importlib.import_module(module_name), function_name)
    applog.bind(job=name)  # the invocation's line, and every line of the run, name the job
    fields: dict[str, Any] = {"job": name, "trigger": "admin"}
    try:
        # The invocation's tally takes the run's counters; its line has any trace.
        counts = run_counted(name, job, fields, traceback=False)
    except RunBusy:  # it ran nothing, so nothing is recorded
        raise
    except Exception as error:
        _record_failed(actor, name, error)
        raise
    # A run is many transactions of its own: it is recorded once it has ended, with what it
    # reports having done.
    from app.audit import trail  # cold start: the database, once a job has run

    trail.recorded(actor, "job.run", name, {"report": counts})
    return {"job": name, **counts}


def _record_failed(actor: Actor, name: str, error: Exception) -> None:
    """A run that failed may have committed much before it stopped (cos-cleanup deletes
    batch by batch, order-reconcile settles order by order), so it is recorded too: its
    error by code or class (a message may quote the driver's or a provider's text) and, when
    the error carries one (cleanup.CleanupInterrupted, sweeper.SweepIncomplete), the report
    of what it had done. The run's own error is what the admin is answered: a record that
    cannot be written either (the database down) is logged, not raised in its place."""
    from app.audit import trail  # cold start: the database, once a job has run

    changes: dict[str, Any] = {
        "failed": error.code.value if isinstance(error, AppError) else type(error).__name__
    }
    report = getattr(error, "report", None)
    if isinstance(report, dict):
        changes["report"] = report
    try:
        trail.recorded(actor, "job.run", name, changes)
    except Exception as lost:  # noqa: BLE001 - the run's own error is answered, whatever this one
        applog.log_fields(
            log,
            logging.ERROR,
            "admin action not recorded",
            job=name,
            actor_id=actor.user_id,
            error=type(lost).__name__,
        )


@router.post(
    "/admin/jobs/{name}",
    auth=Auth.ADMIN,
    errors=(403, 404, 503),
    summary="Run a maintenance job now",
)
def run_admin_job(req: Request[None, None]) -> dict[str, Any]:
    return run_job(req.path_params["name"], req.actor)
