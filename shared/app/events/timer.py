"""Timer trigger events: `timer_handler(job)` is the `main_handler` of a timer function.

The platform sends `{"Type": "Timer", "TriggerName", "Time": "...Z", "Message"}` on the
trigger's 7-field cron. The job gets the parsed event and returns a report (a dict of what
it did). It runs inside the invocation's end (`app.clock.invocation_ending`, from the
context's `time_limit_in_ms`): a job that may run long asks `app.clock.time_left` (through
`run_budget_s`), as it does in an admin's run, and stops taking work before the platform
ends the invocation. The wrapper writes one JSON log line per run with that report and the
counters the run moved, counts the run in `job_runs_total` (`run_counted`, which runs an
admin's `POST /admin/jobs/{name}` the same way) and returns the report under the job's
name, `{"job": name, ...report}`, as the admin's run answers it. A job that raises is
logged and counted as failed, then re-raised so the platform records the invocation as
failed; the line holds the error's `report` when it carries one (what the job had done
before it failed). A job that finds another run of itself live (`RunBusy`: the last turn
still going, or an admin's run) did nothing wrong: its turn is logged and counted as `busy`
and ends normally, so the platform does not retry it on top of the live run. Whatever the
outcome, the instance's metrics push follows when one is due.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from app.clock import invocation_ending, invocation_ends_at
from app.errors import AppError, RunBusy
from app.observability import logging as applog
from app.observability.instruments import Tally
from app.observability.metrics import JOB_RUNS
from app.observability.push import pusher_for
from app.startup import instance_settings

log = applog.get_logger("app.events.timer")


@dataclass(frozen=True)
class TimerEvent:
    trigger_name: str
    time: datetime  # when the platform fired the trigger, UTC
    message: str  # the trigger's configured argument ("" when none)


def parse(event: Mapping[str, Any]) -> TimerEvent:
    raw_time = str(event.get("Time") or "")
    try:
        fired = datetime.fromisoformat(raw_time.replace("Z", "+00:00"))
        if fired.tzinfo is None:
            fired = fired.replace(tzinfo=timezone.utc)
    except ValueError:
        fired = datetime.now(timezone.utc)
    message = event.get("Message")
    return TimerEvent(
        trigger_name=str(event.get("TriggerName") or ""),
        time=fired.astimezone(timezone.utc),
        message="" if message is None else str(message),
    )


Job = Callable[[TimerEvent], Mapping[str, Any]]


def run_counted(
    job_name: str,
    job: Callable[[], Mapping[str, Any]],
    fields: dict[str, Any],
    tally: Tally | None = None,
    *,
    traceback: bool = True,
) -> dict[str, Any]:
    """One run of a job, from its timer or an admin's request alike: counted in
    `job_runs_total` and logged with `fields`, its outcome and its time, as `job run` (its
    report), `job run skipped` (`RunBusy`, raised again) or `job failed` (ERROR, raised
    again), so a query or an alarm on these lines sees every run. `tally`, when given, is
    open around the job and its counters go on the line (an adapter with a tally of its
    own passes none); `traceback=False` where the adapter logs the error's trace itself."""
    started = time.perf_counter()

    def finish(outcome: str, **more: Any) -> dict[str, Any]:
        JOB_RUNS.labels(job_name, outcome).inc()
        fields.update(tally.fields() if tally is not None else {}, outcome=outcome, **more)
        fields["duration_ms"] = round((time.perf_counter() - started) * 1000, 2)
        return fields

    try:
        if tally is None:
            report = dict(job())
        else:
            with tally:
                report = dict(job())
    except RunBusy as busy:
        applog.log_fields(
            log, logging.INFO, "job run skipped", **finish("busy", reason=busy.message)
        )
        raise
    except Exception as error:
        # By code or class: a message may quote the driver's or a provider's text.
        code = error.code.value if isinstance(error, AppError) else type(error).__name__
        # A job that did part of its work before it failed (a stage of the saga sweep,
        # cos-cleanup half way) says what in its error's `report`.
        done = getattr(error, "report", None)
        more = {"report": done} if isinstance(done, dict) else {}
        log.error(
            "job failed",
            exc_info=traceback,
            extra={"fields": finish("failed", error=code, **more)},
        )
        raise
    applog.log_fields(log, logging.INFO, "job run", **finish("ok", report=report))
    return report


def timer_handler(
    job: Job, name: str | None = None
) -> Callable[[Mapping[str, Any], Any], dict[str, Any]]:
    """Wrap `job` as a timer function. `name` labels the log line and metric (defaults to
    the job's function name with dashes), stable across stages and deployments."""
    job_name = name or job.__name__.replace("_", "-")
    # Once per instance, when the function module is imported, as the HTTP adapter does.
    settings = instance_settings()
    pusher = pusher_for(*settings.metrics_push)

    def run(parsed: TimerEvent, fields: dict[str, Any]) -> dict[str, Any]:
        try:
            report = run_counted(job_name, lambda: job(parsed), fields, Tally())
        except RunBusy:
            return {"job": job_name, "busy": True}
        # Named as app.api.admin_jobs names an admin's run: a report read alone (the
        # platform's invocation record) says which job it is.
        return {"job": job_name, **report}

    def main_handler(event: Mapping[str, Any], context: Any = None) -> dict[str, Any]:
        entered = time.monotonic()
        context = context if isinstance(context, Mapping) else {}
        ends_at = invocation_ends_at(context, entered)
        parsed = parse(event)
        function = str(context.get("function_name") or "")
        fields: dict[str, Any] = {
            "function": function,
            "job": job_name,
            "trigger": parsed.trigger_name,
            "request_id": str(context.get("request_id") or ""),
        }
        try:
            with applog.bound(**fields), invocation_ending(ends_at):
                return run(parsed, fields)
        finally:
            pusher.after_invocation(function)

    return main_handler
