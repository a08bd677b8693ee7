"""API Gateway WebSocket events and the reverse push.

The gateway holds the socket; three functions see its life: register (`connecting`: answer
`accept(...)` or `refuse(...)`), transport (`data send`: a frame from the client) and cleanup
(`closing`). The backend talks to a client by POSTing to the API's reverse-push URL
(`WS_PUSH_URL`): `push(conn_id, data)` sends a frame, `disconnect(conn_id)` closes the socket.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

CONNECTING = "connecting"
DATA_SEND = "data send"
CLOSING = "closing"


@dataclass(frozen=True)
class WsEvent:
    action: str  # CONNECTING, DATA_SEND or CLOSING
    conn_id: str  # the gateway's secConnectionID
    data: str = ""  # the frame (transport only); base64 text when data_type is "binary"
    data_type: str = "text"
    query: dict[str, Any] = field(default_factory=dict)  # the URL query (register only)
    headers: dict[str, str] = field(default_factory=dict)  # keys lower-cased (register only)
    request_context: dict[str, Any] = field(default_factory=dict)

    def query_value(self, name: str) -> str | None:
        value = self.query.get(name)
        if isinstance(value, list):
            value = value[-1] if value else None
        return None if value is None else str(value)


def parse(event: Mapping[str, Any]) -> WsEvent:
    ws = event.get("websocket") or {}
    data = ws.get("data")
    return WsEvent(
        action=str(ws.get("action") or ""),
        conn_id=str(ws.get("secConnectionID") or ""),
        data="" if data is None else data if isinstance(data, str) else json.dumps(data),
        data_type=str(ws.get("dataType") or "text"),
        query=dict(event.get("queryString") or event.get("queryStringParameters") or {}),
        headers={str(k).lower(): str(v) for k, v in (event.get("headers") or {}).items()},
        request_context=dict(event.get("requestContext") or {}),
    )


def accept(conn_id: str, protocol: str | None = None) -> dict[str, Any]:
    """The register function's answer that lets the connection open."""
    ws: dict[str, Any] = {"action": CONNECTING, "secConnectionID": conn_id}
    if protocol:
        ws["secWebSocketProtocol"] = protocol
    return {"errNo": 0, "errMsg": "ok", "websocket": ws}


def refuse(conn_id: str, message: str = "refused", err_no: int = 1) -> dict[str, Any]:
    """The register function's answer that refuses the handshake (any errNo but 0)."""
    return {
        "errNo": err_no or 1,
        "errMsg": message,
        "websocket": {"action": CONNECTING, "secConnectionID": conn_id},
    }


class PushError(RuntimeError):
    """The reverse-push URL could not be reached or did not answer as the gateway does."""


def _post(payload: dict[str, Any], url: str | None, timeout_s: float) -> bool:
    from app.outbound.client import CallFailed, call  # cold start: only a push calls out

    if url is None:
        from app.config import get_settings  # cold start: settings only when a push is sent

        url = get_settings().ws_push_url
    if not url:
        raise PushError("WS_PUSH_URL is not set")
    try:
        reply = call("POST", url, json_body=payload, timeout_s=timeout_s)
        answer = reply.json()
    except (CallFailed, ValueError) as error:
        raise PushError(f"reverse push failed: {type(error).__name__}") from error
    if not isinstance(answer, dict) or "errNo" not in answer:
        raise PushError(f"reverse push answered {reply.status} without errNo")
    return bool(answer["errNo"] == 0)


def push(
    conn_id: str, data: str | Mapping[str, Any], *, url: str | None = None, timeout_s: float = 5
) -> bool:
    """Send one text frame to a connection. False when the gateway no longer knows it
    (the client has gone: forget the connection); PushError when the gateway is unreachable."""
    text = (
        data
        if isinstance(data, str)
        else json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    )
    payload = {
        "websocket": {
            "action": DATA_SEND,
            "secConnectionID": conn_id,
            "dataType": "text",
            "data": text,
        }
    }
    return _post(payload, url, timeout_s)


def disconnect(conn_id: str, *, url: str | None = None, timeout_s: float = 5) -> bool:
    """Close a connection from the server side; the cleanup function then runs."""
    payload = {"websocket": {"action": CLOSING, "secConnectionID": conn_id}}
    return _post(payload, url, timeout_s)
