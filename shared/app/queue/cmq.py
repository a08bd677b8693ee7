"""The queue port's `cmq` backend: TDMQ for CMQ's `SendCmqMsg` through
`tencentcloud-sdk-python-tdmq` (imported on first publish, never at cold start).

The queue named in a publish is the CMQ queue name; the function whose `cmq` trigger names
it receives the message (see app.events.queue). CMQ delays are whole seconds, so a
sub-second delay is rounded up: a re-queued message must never arrive before its time.
TENCENTCLOUD_API_ENDPOINT (host:port, over http) points the client at a test endpoint.
"""

from __future__ import annotations

import json
import math
import threading
from typing import Any

MAX_DELAY_S = 3600  # CMQ's own limit on DelaySeconds


class PublishFailed(RuntimeError):
    """The queue refused or could not be reached; the message was not sent."""


class CmqBackend:
    def __init__(self) -> None:
        self._client: Any = None
        self._lock = threading.Lock()

    def _get_client(self) -> Any:
        with self._lock:
            if self._client is None:
                from tencentcloud.tdmq.v20200217 import tdmq_client

                from app import tencentcloud

                self._client = tencentcloud.client(tdmq_client.TdmqClient)
            return self._client

    def publish(self, queue: str, message: dict[str, Any], *, delay_s: float = 0) -> str:
        from tencentcloud.common.exception.tencent_cloud_sdk_exception import (
            TencentCloudSDKException,
        )
        from tencentcloud.tdmq.v20200217 import models

        request = models.SendCmqMsgRequest()
        request.QueueName = queue
        request.MsgContent = json.dumps(message, ensure_ascii=False, separators=(",", ":"))
        request.DelaySeconds = min(math.ceil(max(delay_s, 0)), MAX_DELAY_S)
        try:
            response = self._get_client().SendCmqMsg(request)
        except TencentCloudSDKException as exc:
            raise PublishFailed(f"SendCmqMsg to {queue} failed: {exc.get_code()}") from None
        except Exception as exc:  # noqa: BLE001 - network errors surface as many types
            raise PublishFailed(f"SendCmqMsg to {queue} failed: {type(exc).__name__}") from None
        if response.Result is False:
            raise PublishFailed(f"SendCmqMsg to {queue} was not accepted")
        return str(response.MsgId or "")
