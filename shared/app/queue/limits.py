"""What every queue backend sends: the message as compact JSON text, at most the 128 KB an
SCF event may be. The local broker would carry more, so it refuses the same messages the
platform does: a message that grows past the limit fails at `make run` and in the tests,
not first in production."""

from __future__ import annotations

import json
from typing import Any

from app.observability.metrics import QUEUE_PUBLISHES

MAX_EVENT_BYTES = 128 * 1024


class PublishFailed(RuntimeError):
    """The message was not sent: refused here, refused by the platform or not delivered to
    it."""


def encode(message: dict[str, Any]) -> str:
    return json.dumps(message, ensure_ascii=False, separators=(",", ":"))


def check_size(queue: str, body: str) -> None:
    """Refuses (PublishFailed, counted as `too_large`) a message over the event limit."""
    if len(body.encode()) > MAX_EVENT_BYTES:
        QUEUE_PUBLISHES.labels(queue=queue, outcome="too_large").inc()
        raise PublishFailed(f"a message to {queue} is over {MAX_EVENT_BYTES} bytes")
