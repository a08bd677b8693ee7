"""Queue trigger events: `queue_handler(consume)` is the `main_handler` of a queue function.

The CMQ / TDMQ-for-CMQ trigger sends `{"Records": [{"CMQ": {"msgId", "msgBody", ...}}]}`;
`msgBody` is the JSON text that `app.queue.publish` sent. `consume(message)` is called once
per record with the decoded dict. Delivery is at least once, so `consume` must be
idempotent. An exception from `consume` propagates: the platform then delivers the message
again, which is the retry. A body that is not a JSON object can never succeed, so it is
logged and dropped rather than redelivered forever. After its batch a queue function sends
the delayed messages that have fallen due (see app.queue.cmq). Each record's log line
carries the counters its `consume` moved; after the batch, raised or not, the instance's
metrics push follows when one is due.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from app import queue
from app.config import get_settings
from app.observability import logging as applog
from app.observability.instruments import Tally
from app.observability.push import pusher_for

log = applog.get_logger("app.events.queue")

Consume = Callable[[dict[str, Any]], Any]


def records(event: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The CMQ part of each record of a trigger event."""
    out = []
    for record in event.get("Records") or []:
        if isinstance(record, Mapping) and isinstance(record.get("CMQ"), Mapping):
            out.append(dict(record["CMQ"]))
    return out


def decode(body: Any) -> dict[str, Any] | None:
    try:
        message = json.loads(body) if isinstance(body, (str, bytes)) else None
    except ValueError:
        return None
    return message if isinstance(message, dict) else None


def _release_due(function: str) -> int:
    """Send delayed messages that fell due: the backend may have no native delays (CMQ
    topics), and a busy queue function is the soonest chance. The batch itself succeeded,
    so a failure here is logged, never raised; the sweeper tries again."""
    try:
        return queue.release_due()
    except Exception:
        log.exception("releasing delayed messages failed", extra={"fields": {"function": function}})
        return 0


def queue_handler(consume: Consume) -> Callable[[Mapping[str, Any], Any], dict[str, Any]]:
    # Once per instance, when the function module is imported, as the HTTP adapter does.
    settings = get_settings()
    applog.configure(settings.log_level)
    pusher = pusher_for(*settings.metrics_push)

    def main_handler(event: Mapping[str, Any], context: Any = None) -> dict[str, Any]:
        context = context if isinstance(context, Mapping) else {}
        function = str(context.get("function_name") or "")
        try:
            return batch(event, context, function)
        finally:
            pusher.after_invocation(function)

    def batch(
        event: Mapping[str, Any], context: Mapping[str, Any], function: str
    ) -> dict[str, Any]:
        handled = 0
        for record in records(event):
            fields: dict[str, Any] = {
                "function": function,
                "queue": record.get("topicName") or record.get("queueName") or "",
                "msg_id": record.get("msgId"),
                "request_id": str(context.get("request_id") or ""),
            }
            message = decode(record.get("msgBody"))
            if message is None:
                applog.log_fields(
                    log,
                    logging.ERROR,
                    "queue message dropped",
                    **fields,
                    outcome="not a JSON object",
                )
                continue
            started = time.perf_counter()
            tally = Tally()
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
            handled += 1
        return {"handled": handled, "released": _release_due(function)}

    return main_handler
