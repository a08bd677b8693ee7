"""Asynchronous invocations: each function the manifest invokes asynchronously subscribes to
the queue of its name on the process broker (app.queue.local) and gets each message as its
event, as SCF's `Invoke` with `InvocationType=Event` hands it the `ClientContext`."""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from typing import Any

from app.queue.local import Consumer, Message


def consumer(function: str, invoke: Callable[[str, Any, str], Any]) -> Consumer:
    """Deliveries become invocations of `function`; an exception from the function reaches
    the broker, which delivers the message again (the function's async retries)."""

    def consume(message: Message, attempt: int) -> None:
        request_id = secrets.token_hex(16)
        invoke(function, json.loads(message.body), request_id)

    return consume
