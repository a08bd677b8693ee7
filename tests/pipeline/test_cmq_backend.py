from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.fakes.tencentcloud import Call, FakeTencentCloud, TencentCloudError
from tests.support.settings import settings_env


@pytest.fixture
def tdmq() -> Iterator[FakeTencentCloud]:
    def send(params: dict[str, Any], _call: Call) -> dict[str, Any]:
        if params["QueueName"] == "missing":
            raise TencentCloudError("ResourceNotFound", "no such queue")
        return {"Result": True, "MsgId": "msg-1"}

    with FakeTencentCloud() as fake:
        fake.on("SendCmqMsg", send)
        with settings_env(QUEUE_BACKEND="cmq", **fake.env()):
            yield fake


def test_publish_sends_a_signed_send_cmq_msg_with_whole_second_delay(
    tdmq: FakeTencentCloud,
) -> None:
    from app.queue.cmq import CmqBackend

    backend = CmqBackend()
    message = {"kind": "step", "task_id": "t1", "step": 0}
    assert backend.publish("pipeline-tasks", message) == "msg-1"
    assert backend.publish("pipeline-tasks", message, delay_s=0.2) == "msg-1"
    first, delayed = tdmq.calls_of("SendCmqMsg")
    assert first.service == "tdmq" and first.version == "2020-02-17"
    assert first.params["QueueName"] == "pipeline-tasks"
    assert json.loads(first.params["MsgContent"]) == message
    assert first.params["DelaySeconds"] == 0
    assert delayed.params["DelaySeconds"] == 1  # never earlier than asked
    assert tdmq.refused == []


def test_a_refused_publish_raises_publish_failed(tdmq: FakeTencentCloud) -> None:
    from app.queue.cmq import CmqBackend, PublishFailed

    with pytest.raises(PublishFailed, match="ResourceNotFound"):
        CmqBackend().publish("missing", {"x": 1})


def test_a_wrong_secret_is_refused_by_the_endpoint(tdmq: FakeTencentCloud) -> None:
    from app.queue.cmq import CmqBackend, PublishFailed

    with settings_env(TENCENTCLOUD_SECRET_KEY="not-the-key"), pytest.raises(PublishFailed):
        CmqBackend().publish("pipeline-tasks", {"x": 1})
    assert tdmq.calls_of("SendCmqMsg") == []
    assert tdmq.refused


def test_the_port_picks_the_cmq_backend_from_settings(tdmq: FakeTencentCloud) -> None:
    import app.queue as port

    port._backend = None
    try:
        assert port.publish("pipeline-tasks", {"x": 1}) == "msg-1"
        assert type(port.backend()).__name__ == "CmqBackend"
    finally:
        port._backend = None


def test_the_run_roles_temporary_keys_sign_with_their_session_token(
    tdmq: FakeTencentCloud,
) -> None:
    from app.queue.cmq import CmqBackend

    # SCF injects a run role's keys under these names; explicit keys are absent then.
    role = {
        "TENCENTCLOUD_SECRET_ID": None,
        "TENCENTCLOUD_SECRET_KEY": None,
        "TENCENTCLOUD_SECRETID": tdmq.secret_id,
        "TENCENTCLOUD_SECRETKEY": tdmq.secret_key,
        "TENCENTCLOUD_SESSIONTOKEN": "role-session-token",
    }
    with settings_env(**role):
        assert CmqBackend().publish("pipeline-tasks", {"x": 1}) == "msg-1"
    (call,) = tdmq.calls_of("SendCmqMsg")
    assert call.headers.get("X-TC-Token") == "role-session-token"
