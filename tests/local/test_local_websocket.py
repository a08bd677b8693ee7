"""The WebSocket API through a real client: register accepts or refuses the handshake,
frames reach the transport function, the reverse-push URL reaches the client, and cleanup
runs on close from either side."""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from tests.support.local_cloud import wait_for


def test_register_refuses_without_the_token_with_401(cloud: Any) -> None:
    with pytest.raises(InvalidStatus) as refused:
        connect(cloud.ws_url + "/ws?token=wrong", open_timeout=10)
    response = refused.value.response
    assert response.status_code == 401
    body = json.loads(response.body)
    assert body["code"] == "AUTH_REQUIRED"
    assert body["message"] == "a valid token is required"


def test_an_unknown_websocket_path_is_refused(cloud: Any) -> None:
    with pytest.raises(InvalidStatus) as refused:
        connect(cloud.ws_url + "/not-ws", open_timeout=10)
    assert refused.value.response.status_code == 404


def test_frames_echo_back_through_the_reverse_push_url(cloud: Any, redis_db: Any) -> None:
    with connect(cloud.ws_url + "/ws?token=open-sesame", open_timeout=10) as ws:
        ws.send("hello")
        first = json.loads(ws.recv(timeout=10))
        assert first["echo"] == "hello"
        ws.send("你好")
        second = json.loads(ws.recv(timeout=10))
        assert second == {"echo": "你好", "conn_id": first["conn_id"]}
        conn_id = first["conn_id"]
        assert redis_db.get(f"local-test:ws:closed:{conn_id}") is None
    assert wait_for(lambda: redis_db.get(f"local-test:ws:closed:{conn_id}") == "1")
    # The connection is gone: the reverse-push URL says so.
    gone = requests.post(
        cloud.push_url,
        json={"websocket": {"action": "data send", "secConnectionID": conn_id, "data": "x"}},
        timeout=10,
    )
    assert gone.json()["errNo"] != 0


def test_a_push_from_outside_reaches_the_client_and_closing_closes_it(
    cloud: Any, redis_db: Any
) -> None:
    with connect(cloud.ws_url + "/ws?token=open-sesame", open_timeout=10) as ws:
        ws.send("who am i")
        conn_id = json.loads(ws.recv(timeout=10))["conn_id"]
        pushed = requests.post(
            cloud.push_url,
            json={
                "websocket": {
                    "action": "data send",
                    "secConnectionID": conn_id,
                    "dataType": "text",
                    "data": "from the backend",
                }
            },
            timeout=10,
        )
        assert pushed.json() == {"errNo": 0, "errMsg": "ok"}
        assert ws.recv(timeout=10) == "from the backend"
        ws.send("close-me")
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=10)
    assert wait_for(lambda: redis_db.get(f"local-test:ws:closed:{conn_id}") == "1")


def test_a_malformed_push_is_refused(cloud: Any) -> None:
    reply = requests.post(cloud.push_url, data=b"not json", timeout=10)
    assert reply.status_code == 400
    assert reply.json()["errNo"] != 0
