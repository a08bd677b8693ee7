"""The queue port's `scf` backend: SCF asynchronous invocation. A message to a queue is an
`Invoke` of the function of that name with `InvocationType=Event`, the message itself as the
event (`ClientContext`), through `tencentcloud-sdk-python-scf` (imported on first publish,
never at cold start) and the run role's temporary keys (app.tencentcloud).

What the platform gives: at least once, retried under the function's async retry policy
(the deployer sets `RetryNum` and `MsgTTL` from serverless.yml); no usable dead-letter queue
(it is CMQ-based), so the sweeper finds lost work. What it does not: delays, so a delayed
message waits in Redis (a sorted set per queue, scored by due time, the queue's name kept in
DELAYED_QUEUES) and is invoked when due
by `release_due`, which every queue function calls after its message and the sweeper every
minute: a delay is a lower bound, kept to within the next worker invocation or at worst the
sweeper's minute. A message claimed from the set but lost before its invoke is lost like any
undelivered one: the sweeper finds the stalled work.

Limits: an event is at most 128 KB (app.queue.limits: refused here before the call, and a
delayed one before it is parked); the account's Invoke API takes 100 requests per second,
shared by every function: a refusal for the rate is retried twice after a short pause, then
raised like any failure (each publish is counted in `queue_publishes_total` by outcome).
TENCENTCLOUD_API_ENDPOINT points the client at a test endpoint.
"""

from __future__ import annotations

import json
import random
import threading
import time
from typing import Any

from app import tencentcloud
from app.config import get_settings
from app.ids import new_id
from app.observability.metrics import QUEUE_PUBLISHES
from app.queue.limits import PublishFailed, check_size, encode
from app.redis_client import get_redis

DELAYED_PREFIX = "queue:delayed:"
# The queues that have had a delayed message: the sets `release_due` looks at. A set of
# names, not a SCAN for the prefix: every worker invocation releases, and a SCAN walks every
# key of the database (of every node, on a cluster), however few match.
DELAYED_QUEUES = "queue:delayed-queues"
RELEASE_BATCH = 100
# At most this many invokes per release: it runs after every worker message, in what is left
# of that invocation, and in the sweeper's last stage; a backlog goes out over the next
# releases (each invoke takes a few ms to tens of ms, and the account's Invoke API 100 a
# second).
RELEASE_MAX = 200
RATE_LIMITED = ("RequestLimitExceeded", "LimitExceeded")
RATE_RETRIES = 2

# Atomically take up to ARGV[2] members due by ARGV[1] (ms): no two callers invoke one.
_CLAIM_DUE = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
if #due > 0 then redis.call('ZREM', KEYS[1], unpack(due)) end
return due
"""


class ScfBackend:
    def __init__(self) -> None:
        self._client: Any = None
        self._lock = threading.Lock()

    def _get_client(self) -> Any:
        with self._lock:
            if self._client is None:
                from tencentcloud.scf.v20180416 import scf_client  # cold start: SDK on use

                self._client = tencentcloud.client(scf_client.ScfClient)
            return self._client

    def publish(self, queue: str, message: dict[str, Any], *, delay_s: float = 0) -> str:
        body = encode(message)
        if delay_s > 0:
            # Refused before it is parked: one that could never be sent, parked, would come
            # back first at every release and hold the queue's later messages behind it.
            check_size(queue, body)
            return self._park(queue, message, delay_s)
        return self._invoke(queue, body)

    def _invoke(self, function: str, body: str) -> str:
        from tencentcloud.common.exception import TencentCloudSDKException  # cold start: SDK
        from tencentcloud.scf.v20180416 import models  # cold start: the SDK, on first publish

        check_size(function, body)
        request = models.InvokeRequest()
        request.FunctionName = function
        request.InvocationType = "Event"
        request.ClientContext = body
        request.Namespace = get_settings().scf_namespace
        for attempt in range(RATE_RETRIES + 1):
            try:
                response = self._get_client().Invoke(request)
            except TencentCloudSDKException as exc:
                code = str(exc.get_code() or "")
                if code.startswith(RATE_LIMITED) and attempt < RATE_RETRIES:
                    QUEUE_PUBLISHES.labels(queue=function, outcome="rate_limited").inc()
                    time.sleep(0.1 * (attempt + 1) * (1 + random.random()))
                    continue
                QUEUE_PUBLISHES.labels(queue=function, outcome="refused").inc()
                raise PublishFailed(f"Invoke of {function} failed: {code}") from None
            except Exception as exc:  # noqa: BLE001 - network errors surface as many types
                QUEUE_PUBLISHES.labels(queue=function, outcome="failed").inc()
                raise PublishFailed(f"Invoke of {function} failed: {type(exc).__name__}") from None
            QUEUE_PUBLISHES.labels(queue=function, outcome="sent").inc()
            result = getattr(response, "Result", None)
            return str(getattr(result, "FunctionRequestId", "") or response.RequestId or "")
        raise AssertionError("unreachable")  # pragma: no cover

    @staticmethod
    def _park(queue: str, message: dict[str, Any], delay_s: float) -> str:
        msg_id = new_id()
        due_ms = int((time.time() + delay_s) * 1000)
        member = encode({"id": msg_id, "queue": queue, "body": message})
        redis = get_redis()
        # Named first: a message is never parked where no release looks (the two keys are
        # in different cluster slots, so not one transaction).
        redis.sadd(DELAYED_QUEUES, queue)
        redis.zadd(DELAYED_PREFIX + queue, {member: due_ms})
        return msg_id

    def release_due(self, queues: list[str] | None = None, *, at_most: int = RELEASE_MAX) -> int:
        """Invoke parked messages that are due, oldest due first, at most `at_most`; returns
        how many were sent. A message whose invoke fails goes back, due at once, and the
        error is raised."""
        redis = get_redis()
        if queues is None:
            queues = sorted(str(name) for name in redis.smembers(DELAYED_QUEUES))
        sent = 0
        for queue in queues:
            key = DELAYED_PREFIX + queue
            while sent < at_most:
                now_ms = int(time.time() * 1000)
                batch = min(RELEASE_BATCH, at_most - sent)
                due = redis.eval(_CLAIM_DUE, 1, key, now_ms, batch)
                for index, member in enumerate(due):
                    try:
                        self._invoke(queue, encode(json.loads(member)["body"]))
                    except PublishFailed:
                        redis.zadd(key, dict.fromkeys(due[index:], now_ms))
                        raise
                    sent += 1
                if len(due) < batch:
                    break
        return sent
