"""The `cmq` queue backend against a Tencent Cloud API endpoint that checks TC3 signatures:
immediate messages are published to the trigger's topic, delayed ones wait in Redis."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.fakes.tencentcloud import Call, FakeTencentCloud, TencentCloudError
from tests.support.settings import settings_env


@pytest.fixture
def tdmq(clean_redis: Any) -> Iterator[FakeTencentCloud]:
    state = {"fail": False}

    def publish(params: dict[str, Any], _call: Call) -> dict[str, Any]:
        if params["TopicName"] == "missing" or state["fail"]:
            raise TencentCloudError("ResourceNotFound", "no such topic")
        return {"Result": True, "MsgId": f"msg-{len(fake.calls) + 1}"}

    with FakeTencentCloud() as fake:
        fake.on("PublishCmqMsg", publish)
        fake.state = state  # type: ignore[attr-defined]
        with settings_env(QUEUE_BACKEND="cmq", **fake.env()):
            yield fake


def test_publish_sends_a_signed_publish_cmq_msg_to_the_topic(tdmq: FakeTencentCloud) -> None:
    from app.queue.cmq import CmqBackend

    message = {"kind": "step", "task_id": "t1", "step": 0}
    assert CmqBackend().publish("pipeline-tasks", message).startswith("msg-")
    (call,) = tdmq.calls_of("PublishCmqMsg")
    assert call.service == "tdmq" and call.version == "2020-02-17"
    assert call.params["TopicName"] == "pipeline-tasks"
    assert json.loads(call.params["MsgContent"]) == message
    assert tdmq.refused == []


def test_a_delayed_message_waits_in_redis_until_due(tdmq: FakeTencentCloud) -> None:
    from app.queue.cmq import CmqBackend

    backend = CmqBackend()
    backend.publish("pipeline-tasks", {"n": 1}, delay_s=0.3)
    backend.publish("pipeline-tasks", {"n": 2}, delay_s=60)
    assert backend.release_due() == 0  # nothing due yet
    assert tdmq.calls_of("PublishCmqMsg") == []
    time.sleep(0.35)
    assert backend.release_due() == 1
    (call,) = tdmq.calls_of("PublishCmqMsg")
    assert json.loads(call.params["MsgContent"]) == {"n": 1}
    assert backend.release_due() == 0  # released once only


def test_a_failed_release_puts_the_message_back(tdmq: FakeTencentCloud) -> None:
    from app.queue.cmq import CmqBackend, PublishFailed

    backend = CmqBackend()
    backend.publish("pipeline-tasks", {"n": 1}, delay_s=0.01)
    time.sleep(0.02)
    tdmq.state["fail"] = True  # type: ignore[attr-defined]
    with pytest.raises(PublishFailed):
        backend.release_due()
    tdmq.state["fail"] = False  # type: ignore[attr-defined]
    assert backend.release_due() == 1


def test_a_queue_function_releases_due_messages_after_its_batch(
    tdmq: FakeTencentCloud,
) -> None:
    import app.queue as port
    from app.events.queue import queue_handler

    port._backend = None
    try:
        port.publish("pipeline-tasks", {"n": 1}, delay_s=0.01)
        time.sleep(0.02)
        seen: list[dict[str, Any]] = []
        handler = queue_handler(seen.append)
        event = {"Records": [{"CMQ": {"msgId": "m", "msgBody": json.dumps({"n": 0})}}]}
        assert handler(event, {}) == {"handled": 1, "released": 1}
        assert seen == [{"n": 0}]
        assert len(tdmq.calls_of("PublishCmqMsg")) == 1
    finally:
        port._backend = None


def test_a_refused_publish_raises_publish_failed(tdmq: FakeTencentCloud) -> None:
    from app.queue.cmq import CmqBackend, PublishFailed

    with pytest.raises(PublishFailed, match="ResourceNotFound"):
        CmqBackend().publish("missing", {"x": 1})


def test_a_wrong_secret_is_refused_by_the_endpoint(tdmq: FakeTencentCloud) -> None:
    from app.queue.cmq import CmqBackend, PublishFailed

    with settings_env(TENCENTCLOUD_SECRET_KEY="not-the-key"), pytest.raises(PublishFailed):
        CmqBackend().publish("pipeline-tasks", {"x": 1})
    assert tdmq.calls_of("PublishCmqMsg") == []
    assert tdmq.refused


def test_the_port_picks_the_cmq_backend_from_settings(tdmq: FakeTencentCloud) -> None:
    import app.queue as port

    port._backend = None
    try:
        assert port.publish("pipeline-tasks", {"x": 1}).startswith("msg-")
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
        assert CmqBackend().publish("pipeline-tasks", {"x": 1}).startswith("msg-")
    (call,) = tdmq.calls_of("PublishCmqMsg")
    assert call.headers.get("X-TC-Token") == "role-session-token"
