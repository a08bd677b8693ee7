"""The timer, queue and WebSocket event wrappers called as SCF calls a main_handler: with
the platform's event and a context dict."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

import pytest

from app.events import queue, timer, websocket
from app.observability.metrics import JOB_RUNS
from tests.support.logs import capture_logs

CONTEXT = {"request_id": "r-1", "function_name": "probe"}


def _cmq(*bodies: Any) -> dict[str, Any]:
    return {
        "Records": [
            {"CMQ": {"topicName": "q", "msgId": f"m{i}", "msgBody": body}}
            for i, body in enumerate(bodies)
        ]
    }


def test_a_timer_job_gets_the_parsed_event_and_its_report_is_logged() -> None:
    seen: list[timer.TimerEvent] = []

    def nightly(event: timer.TimerEvent) -> dict[str, Any]:
        seen.append(event)
        return {"deleted": 3}

    handler = timer.timer_handler(nightly)
    event = {"Type": "Timer", "TriggerName": "t", "Time": "2026-11-29T03:00:00Z", "Message": "m"}
    before = JOB_RUNS.value(job="nightly", outcome="ok")
    with capture_logs() as logs:
        assert handler(event, CONTEXT) == {"deleted": 3}
    assert seen == [timer.TimerEvent("t", datetime(2026, 11, 29, 3, tzinfo=timezone.utc), "m")]
    (line,) = logs.where(message="job run")
    assert line["job"] == "nightly"
    assert line["report"] == {"deleted": 3}
    assert line["outcome"] == "ok"
    assert JOB_RUNS.value(job="nightly", outcome="ok") == before + 1


def test_a_failing_timer_job_is_logged_counted_and_raised() -> None:
    def broken(event: timer.TimerEvent) -> dict[str, Any]:
        raise RuntimeError("boom")

    handler = timer.timer_handler(broken, name="broken-job")
    before = JOB_RUNS.value(job="broken-job", outcome="failed")
    with capture_logs() as logs, pytest.raises(RuntimeError):
        handler({"Type": "Timer", "TriggerName": "t", "Time": "not a time"}, CONTEXT)
    assert logs.where(message="job failed", job="broken-job", outcome="failed")
    assert JOB_RUNS.value(job="broken-job", outcome="failed") == before + 1


def test_a_queue_handler_consumes_each_record_and_drops_bodies_that_are_not_objects() -> None:
    consumed: list[dict[str, Any]] = []
    handler = queue.queue_handler(consumed.append)
    with capture_logs() as logs:
        result = handler(_cmq(json.dumps({"a": 1}), "not json", "[1, 2]", '{"b": 2}'), CONTEXT)
    assert consumed == [{"a": 1}, {"b": 2}]
    assert result == {"handled": 2, "released": 0}
    assert len(logs.where(message="queue message", outcome="ok")) == 2
    assert len(logs.where(message="queue message dropped")) == 2


def test_a_failing_consumer_propagates_so_the_platform_redelivers() -> None:
    def consume(message: dict[str, Any]) -> None:
        raise ValueError("not yet")

    with capture_logs() as logs, pytest.raises(ValueError):
        queue.queue_handler(consume)(_cmq('{"a": 1}'), CONTEXT)
    assert logs.where(message="queue message failed", msg_id="m0")


def test_websocket_events_and_answers() -> None:
    connecting = websocket.parse(
        {
            "websocket": {"action": "connecting", "secConnectionID": "c1"},
            "queryString": {"token": ["a", "b"]},
            "headers": {"X-A": "1"},
        }
    )
    assert connecting.action == websocket.CONNECTING
    assert connecting.query_value("token") == "b"
    assert connecting.query_value("missing") is None
    assert connecting.headers == {"x-a": "1"}
    frame = websocket.parse(
        {"websocket": {"action": "data send", "secConnectionID": "c1", "data": {"k": 1}}}
    )
    assert frame.data == '{"k": 1}'
    assert websocket.accept("c1", "chat") == {
        "errNo": 0,
        "errMsg": "ok",
        "websocket": {
            "action": "connecting",
            "secConnectionID": "c1",
            "secWebSocketProtocol": "chat",
        },
    }
    refused = websocket.refuse("c1", "no", err_no=0)
    assert refused["errNo"] != 0
    assert refused["errMsg"] == "no"


def test_push_without_a_reachable_push_url_is_a_push_error() -> None:
    with pytest.raises(websocket.PushError):
        websocket.push("c1", "x", url="http://127.0.0.1:9/unreachable", timeout_s=2)
    with pytest.raises(websocket.PushError):
        websocket.disconnect("c1", url="")
