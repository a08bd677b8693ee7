"""The timer and asynchronous-invocation wrappers called as SCF calls a main_handler: with
the platform's event and a context dict."""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import Any

import pytest

from app.events import queue, timer
from app.observability import logging as applog
from app.observability.metrics import JOB_RUNS
from tests.support.logs import capture_logs

CONTEXT = {"request_id": "r-1", "function_name": "probe"}


def test_a_timer_job_gets_the_parsed_event_and_its_report_is_logged() -> None:
    seen: list[timer.TimerEvent] = []

    def nightly(event: timer.TimerEvent) -> dict[str, Any]:
        seen.append(event)
        return {"deleted": 3}

    handler = timer.timer_handler(nightly)
    event = {"Type": "Timer", "TriggerName": "t", "Time": "2026-11-29T03:00:00Z", "Message": "m"}
    before = JOB_RUNS.value(job_name="nightly", outcome="ok")
    with capture_logs() as logs:
        assert handler(event, CONTEXT) == {"job": "nightly", "deleted": 3}
    assert seen == [timer.TimerEvent("t", datetime(2026, 11, 29, 3, tzinfo=timezone.utc), "m")]
    (line,) = logs.where(message="job run")
    assert line["job"] == "nightly"
    assert line["report"] == {"deleted": 3}
    assert line["outcome"] == "ok"
    assert JOB_RUNS.value(job_name="nightly", outcome="ok") == before + 1


def test_a_failing_timer_job_is_logged_counted_and_raised() -> None:
    def broken(event: timer.TimerEvent) -> dict[str, Any]:
        raise RuntimeError("boom")

    handler = timer.timer_handler(broken, name="broken-job")
    before = JOB_RUNS.value(job_name="broken-job", outcome="failed")
    with capture_logs() as logs, pytest.raises(RuntimeError):
        handler({"Type": "Timer", "TriggerName": "t", "Time": "not a time"}, CONTEXT)
    assert logs.where(message="job failed", job="broken-job", outcome="failed")
    assert JOB_RUNS.value(job_name="broken-job", outcome="failed") == before + 1


def test_an_invocation_consumes_its_message_and_drops_events_that_are_not_objects() -> None:
    consumed: list[dict[str, Any]] = []
    handler = queue.queue_handler(consumed.append)
    with capture_logs() as logs:
        results = [handler(event, CONTEXT) for event in ({"a": 1}, "not json", [1, 2], '{"b": 2}')]
    assert consumed == [{"a": 1}, {"b": 2}]
    assert [r["handled"] for r in results] == [1, 0, 0, 1]
    assert len(logs.where(message="queue message", outcome="ok")) == 2
    assert len(logs.where(message="queue message dropped")) == 2


def test_a_failing_consumer_propagates_so_the_platform_invokes_again() -> None:
    def consume(message: dict[str, Any]) -> None:
        raise ValueError("not yet")

    with capture_logs() as logs, pytest.raises(ValueError):
        queue.queue_handler(consume)({"a": 1}, CONTEXT)
    assert logs.where(message="queue message failed", request_id="r-1")


def test_lines_a_job_writes_name_its_run() -> None:
    def chatty(event: timer.TimerEvent) -> dict[str, Any]:
        applog.log_fields(applog.get_logger("app.somewhere"), logging.WARNING, "halfway")
        return {}

    with capture_logs() as logs:
        timer.timer_handler(chatty)({"Type": "Timer", "TriggerName": "t"}, CONTEXT)
    (line,) = logs.where(message="halfway")
    assert (line["job"], line["request_id"], line["function"]) == ("chatty", "r-1", "probe")


def test_what_a_consumer_binds_is_on_its_lines_and_on_the_message_line() -> None:
    def consume(message: dict[str, Any]) -> None:
        applog.bind(task_id=message["task_id"])
        applog.log_fields(applog.get_logger("app.somewhere"), logging.WARNING, "halfway")
        if message.get("fail"):
            raise ValueError("not yet")

    handler = queue.queue_handler(consume)
    with capture_logs() as logs:
        handler({"task_id": "t-1"}, CONTEXT)
        with pytest.raises(ValueError):
            handler({"task_id": "t-2", "fail": True}, {**CONTEXT, "request_id": "r-2"})
        handler({"task_id": "t-3"}, {**CONTEXT, "request_id": "r-3"})
    assert [(line["task_id"], line["request_id"]) for line in logs.where(message="halfway")] == [
        ("t-1", "r-1"),
        ("t-2", "r-2"),
        ("t-3", "r-3"),
    ]
    assert logs.where(message="queue message", task_id="t-1", outcome="ok")
    assert logs.where(message="queue message failed", task_id="t-2", request_id="r-2")
    # One message's binding never reaches the next one's lines.
    assert logs.where(message="queue message", task_id="t-3", request_id="r-3")
