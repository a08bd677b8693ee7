"""Asynchronous invocations: `queue_handler(consume)` is the `main_handler` of a function the
queue port publishes to (app.queue).

A message is published as an SCF async invocation (`Invoke`, `InvocationType=Event`) whose
event is the message itself: a JSON object. `consume(message)` is called with it. Delivery is
at least once, so `consume` must be idempotent. An exception from `consume` propagates: the
platform then invokes the function again under its async retry policy, which is the retry.
An event that is not a JSON object can never succeed, so it is logged and dropped rather
than retried. After the message, the function sends the delayed messages that have fallen
due (app.queue: the platform has no delayed invocation). The invocation's log line carries
the counters its `consume` moved and the ids it bound (app.observability.logging `bind`),
which end with the message; after it, raised or not, the instance's metrics push follows
when one is due.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from app import queue
from app.clock import invocation_ending, invocation_ends_at
from app.observability import logging as applog
from app.observability.instruments import Tally
from app.observability.push import pusher_for
from app.startup import instance_settings

log = applog.get_logger("app.events.queue")

Consume = Callable[[dict[str, Any]], Any]


def decode(event: Any) -> dict[str, Any] | None:
    """The message of an invocation: the event object (or JSON text of one)."""
    if isinstance(event, (str, bytes)):
        try:
            event = json.loads(event)
        except ValueError:
            return None
    return dict(event) if isinstance(event, Mapping) else None


def _release_due(function: str) -> int:
    """Send delayed messages that fell due: the platform has no delayed invocation, and a
    busy worker is the soonest chance. The message itself was handled, so a failure here is
    logged, never raised; the sweeper tries again."""
    try:
        return queue.release_due()
    except Exception:
        log.exception("releasing delayed messages failed", extra={"fields": {"function": function}})
        return 0


def queue_handler(consume: Consume) -> Callable[[Any, Any], dict[str, Any]]:
    # Once per instance, when the function module is imported, as the HTTP adapter does.
    settings = instance_settings()
    pusher = pusher_for(*settings.metrics_push)

    def main_handler(event: Any, context: Any = None) -> dict[str, Any]:
        entered = time.monotonic()
        context = context if isinstance(context, Mapping) else {}
        function = str(context.get("function_name") or "")
        request_id = str(context.get("request_id") or "")
        ends_at = invocation_ends_at(context, entered)
        try:
            with applog.bound(function=function, request_id=request_id), invocation_ending(ends_at):
                return invocation(event, function)
        finally:
            pusher.after_invocation(function)

    def invocation(event: Any, function: str) -> dict[str, Any]:
        fields: dict[str, Any] = {}  # its function and request id are the bound ids
        message = decode(event)
        if message is None:
            applog.log_fields(
                log, logging.ERROR, "queue message dropped", **fields, outcome="not a JSON object"
            )
            return {"handled": 0, "released": _release_due(function)}
        started = time.perf_counter()
        tally = Tally()
        # What `consume` binds (the worker: its task's id) names the message's lines, its
        # own line included, and ends with it: the release after it is no task's.
        with applog.bound():
            try:
                with tally:
                    consume(message)
            except Exception:
                fields.update(tally.fields(), outcome="failed")
                fields["duration_ms"] = round((time.perf_counter() - started) * 1000, 2)
                log.exception("queue message failed", extra={"fields": fields})
                raise
            fields.update(tally.fields(), outcome="ok")
            fields["duration_ms"] = round((time.perf_counter() - started) * 1000, 2)
            applog.log_fields(log, logging.INFO, "queue message", **fields)
        return {"handled": 1, "released": _release_due(function)}

    return main_handler
