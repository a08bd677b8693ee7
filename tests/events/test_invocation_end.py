"""The HTTP, timer and queue adapters tell the code they call when the platform ends the
invocation (the context's `time_limit_in_ms`, counted from its start), and nothing once it
has returned."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from app.clock import time_left
from app.events import queue, timer
from app.http import Auth, Request, Router, http_handler
from tests.support.function_url import event

router = Router(tags=("test",))
seen: list[float | None] = []


@router.get("/time-left", auth=Auth.PUBLIC)
def time_left_route(req: Request[None, None]) -> dict[str, Any]:
    seen.append(time_left())
    return {}


def _job(_event: timer.TimerEvent) -> dict[str, Any]:
    seen.append(time_left())
    return {}


def _consume(_message: dict[str, Any]) -> None:
    seen.append(time_left())


ADAPTERS: dict[str, tuple[Callable[..., dict[str, Any]], dict[str, Any]]] = {
    "http": (http_handler(time_left_route), event("GET", "/time-left")),
    "timer": (timer.timer_handler(_job), {"Type": "Timer", "Time": "2026-12-07T03:00:00Z"}),
    "queue": (queue.queue_handler(_consume), {"task_id": "t"}),
}


@pytest.mark.parametrize("adapter", sorted(ADAPTERS))
def test_the_code_an_adapter_calls_knows_when_the_invocation_ends(adapter: str) -> None:
    main_handler, sent = ADAPTERS[adapter]
    seen.clear()
    main_handler(sent, {"request_id": "r-1", "function_name": "probe", "time_limit_in_ms": 7000})
    # A context without it: unknown (SCF always gives one; other callers may not).
    main_handler(sent, {"request_id": "r-2", "function_name": "probe"})
    (within, unknown) = seen
    assert within is not None and 6.0 < within <= 7.0
    assert unknown is None
    assert time_left() is None  # not once the invocation has returned
