"""Queue triggers: each `cmq`-triggered function subscribes to its queue on the process
broker (app.queue.local) and gets the CMQ trigger event, one record per delivery."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from app.queue.local import Consumer, Message
from infra.local.manifest import QueueSpec

TOPIC_OWNER = "1250000000"  # the app id the local cloud pretends to be


def cmq_event(message: Message, subscription: str, request_id: str) -> dict[str, Any]:
    published = datetime.fromtimestamp(message.published_at, timezone.utc)
    return {
        "Records": [
            {
                "CMQ": {
                    "type": "topic",
                    "topicOwner": TOPIC_OWNER,
                    "topicName": message.queue,
                    "subscriptionName": subscription,
                    "publishTime": published.strftime("%Y-%m-%dT%H:%M:%S.")
                    + f"{published.microsecond // 1000:03d}Z",
                    "msgId": message.msg_id,
                    "requestId": request_id,
                    "msgBody": message.body,
                    "msgTag": "",
                }
            }
        ]
    }


def consumer(spec: QueueSpec, invoke: Callable[[str, dict[str, Any], str], Any]) -> Consumer:
    """Deliveries of `spec.queue` become invocations of `spec.function`; an exception from
    the function reaches the broker, which delivers the message again."""

    def consume(message: Message, attempt: int) -> None:
        request_id = secrets.token_hex(16)
        invoke(spec.function, cmq_event(message, spec.function, request_id), request_id)

    return consume
