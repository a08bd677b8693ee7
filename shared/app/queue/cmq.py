"""The queue port's `cmq` backend: TDMQ for CMQ topics, through `PublishCmqMsg` of
`tencentcloud-sdk-python-tdmq` (imported on first publish, never at cold start).

SCF's `cmq` trigger subscribes a function to a CMQ *topic*: a message sent to a queue with
`SendCmqMsg` would never invoke it. So the queue named in a publish is the topic that the
consuming function's trigger names in serverless.yml, and messages are published to it.

Topics have no delayed delivery. A delayed message waits in Redis instead (a sorted set per
topic, scored by due time) and is published when due by `release_due`, which every queue
function calls after its batch (app.events.queue) and the saga sweeper calls every minute.
So a delay is a lower bound: it is kept to within the next worker invocation, or at worst
the sweeper's minute. A message claimed from the set but lost before it was published is
lost like any undelivered message: the sweeper finds the stalled work (at least once).
TENCENTCLOUD_API_ENDPOINT (host:port, over http) points the client at a test endpoint.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

from app import tencentcloud
from app.ids import new_id
from app.redis_client import get_redis

DELAYED_PREFIX = "queue:delayed:"
RELEASE_BATCH = 100

# Atomically take up to ARGV[2] members due by ARGV[1] (ms): no two callers publish one.
_CLAIM_DUE = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
if #due > 0 then redis.call('ZREM', KEYS[1], unpack(due)) end
return due
"""


class PublishFailed(RuntimeError):
    """The topic refused or could not be reached; the message was not sent."""


def _encode(message: dict[str, Any]) -> str:
    return json.dumps(message, ensure_ascii=False, separators=(",", ":"))


class CmqBackend:
    def __init__(self) -> None:
        self._client: Any = None
        self._lock = threading.Lock()

    def _get_client(self) -> Any:
        with self._lock:
            if self._client is None:
                from tencentcloud.tdmq.v20200217 import tdmq_client  # cold start: SDK on use

                self._client = tencentcloud.client(tdmq_client.TdmqClient)
            return self._client

    def publish(self, queue: str, message: dict[str, Any], *, delay_s: float = 0) -> str:
        if delay_s > 0:
            return self._park(queue, message, delay_s)
        return self._publish_now(queue, _encode(message))

    def _publish_now(self, topic: str, body: str) -> str:
        from tencentcloud.common.exception import TencentCloudSDKException  # cold start: SDK
        from tencentcloud.tdmq.v20200217 import models  # cold start: the SDK, on first publish

        request = models.PublishCmqMsgRequest()
        request.TopicName = topic
        request.MsgContent = body
        try:
            response = self._get_client().PublishCmqMsg(request)
        except TencentCloudSDKException as exc:
            raise PublishFailed(f"PublishCmqMsg to {topic} failed: {exc.get_code()}") from None
        except Exception as exc:  # noqa: BLE001 - network errors surface as many types
            raise PublishFailed(f"PublishCmqMsg to {topic} failed: {type(exc).__name__}") from None
        if response.Result is False:
            raise PublishFailed(f"PublishCmqMsg to {topic} was not accepted")
        return str(response.MsgId or "")

    @staticmethod
    def _park(topic: str, message: dict[str, Any], delay_s: float) -> str:
        msg_id = new_id()
        due_ms = int((time.time() + delay_s) * 1000)
        member = _encode({"id": msg_id, "topic": topic, "body": message})
        get_redis().zadd(DELAYED_PREFIX + topic, {member: due_ms})
        return msg_id

    def release_due(self, topics: list[str] | None = None) -> int:
        """Publish every parked message that is due; returns how many were published. A
        message whose publish fails goes back, due at once, and the error is raised."""
        redis = get_redis()
        if topics is None:
            topics = [key[len(DELAYED_PREFIX) :] for key in redis.scan_iter(DELAYED_PREFIX + "*")]
        claim = redis.register_script(_CLAIM_DUE)
        published = 0
        for topic in topics:
            key = DELAYED_PREFIX + topic
            while True:
                now_ms = int(time.time() * 1000)
                due = claim(keys=[key], args=[now_ms, RELEASE_BATCH])
                for index, member in enumerate(due):
                    try:
                        self._publish_now(topic, _encode(json.loads(member)["body"]))
                    except PublishFailed:
                        redis.zadd(key, dict.fromkeys(due[index:], now_ms))
                        raise
                    published += 1
                if len(due) < RELEASE_BATCH:
                    break
        return published
