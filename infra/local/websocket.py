"""The WebSocket API of the local cloud: `/ws` (the paths of the `apigateway` file) through
the register / transport / cleanup functions, and the reverse-push URL.

Connect: the register function gets the `connecting` event (secConnectionID, the URL's
queryString, headers, requestContext); only `errNo: 0` opens the socket, anything else
refuses the handshake with HTTP 401. Each frame goes to the transport function, in order
per connection. Closing, from either side, calls the cleanup function once. The backend
pushes by POSTing `{"websocket": {"action": "data send" | "closing", ...}}` to
`/_local/ws/push`, answered `{"errNo": 0}` or, for a connection that is gone, errNo 1.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import secrets
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from app.errors import AppError, ErrorCode
from infra.local.gateway import Receive, Scope, Send, header_dict, query_string, request_context
from infra.local.manifest import WebSocketApi

if TYPE_CHECKING:
    from infra.local.cloud import LocalCloud

log = logging.getLogger("infra.local.websocket")


@dataclass
class Connection:
    conn_id: str
    api: WebSocketApi
    context: dict[str, Any]
    send: Send
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    closed: bool = False

    async def send_frame(self, data: str, data_type: str) -> None:
        async with self.lock:
            if data_type == "binary":
                await self.send({"type": "websocket.send", "bytes": base64.b64decode(data)})
            else:
                await self.send({"type": "websocket.send", "text": data})

    async def close(self) -> None:
        async with self.lock:
            if not self.closed:
                self.closed = True
                await self.send({"type": "websocket.close", "code": 1000})


class WebSocketGateway:
    def __init__(self, cloud: LocalCloud) -> None:
        self.cloud = cloud
        self.connections: dict[str, Connection] = {}

    async def serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        request_id = secrets.token_hex(16)
        first = await receive()
        if first["type"] != "websocket.connect":
            return
        api = self.cloud.websockets.get(scope["path"])
        if api is None:
            await self._deny(scope, send, ErrorCode.NOT_FOUND, request_id)
            return
        conn_id = secrets.token_hex(16)
        source_ip = (scope.get("client") or ("127.0.0.1", 0))[0]
        context = {
            **request_context(api.path, "GET", request_id, source_ip),
            "websocketEnable": True,
        }
        headers = header_dict(scope.get("headers") or [])
        ws: dict[str, Any] = {"action": "connecting", "secConnectionID": conn_id}
        if headers.get("sec-websocket-protocol"):
            ws["secWebSocketProtocol"] = headers["sec-websocket-protocol"]
        if headers.get("sec-websocket-extensions"):
            ws["secWebSocketExtensions"] = headers["sec-websocket-extensions"]
        subprotocol = None
        if api.register:
            event = {
                "requestContext": context,
                "websocket": ws,
                "headers": headers,
                "body": "",
                "path": scope["path"],
                "httpMethod": "GET",
                "queryString": query_string(scope.get("query_string") or b""),
                "queryStringParameters": {},
                "pathParameters": {},
                "headerParameters": {},
                "stageVariables": {"stage": "release"},
            }
            try:
                answer = await self.cloud.call(api.register, event, request_id)
            except Exception:  # noqa: BLE001 - logged by the cloud; the handshake fails
                await self._deny(scope, send, ErrorCode.INTERNAL_ERROR, request_id)
                return
            if not isinstance(answer, dict) or answer.get("errNo") != 0:
                message = answer.get("errMsg") if isinstance(answer, dict) else None
                await self._deny(scope, send, ErrorCode.AUTH_REQUIRED, request_id, message)
                return
            subprotocol = (answer.get("websocket") or {}).get("secWebSocketProtocol")
        await send({"type": "websocket.accept", "subprotocol": subprotocol})
        conn = Connection(conn_id, api, context, send)
        self.connections[conn_id] = conn
        try:
            await self._frames(conn, receive)
        finally:
            self.connections.pop(conn_id, None)
            conn.closed = True
            if api.cleanup:
                event = {
                    "requestContext": context,
                    "websocket": {"action": "closing", "secConnectionID": conn_id},
                }
                with contextlib.suppress(Exception):  # logged by the cloud
                    await self.cloud.call(api.cleanup, event, secrets.token_hex(16))

    async def _frames(self, conn: Connection, receive: Receive) -> None:
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            if message["type"] != "websocket.receive":
                continue
            if message.get("text") is not None:
                data_type, data = "text", message["text"]
            else:
                data_type, data = "binary", base64.b64encode(message.get("bytes") or b"").decode()
            event = {
                "requestContext": conn.context,
                "websocket": {
                    "action": "data send",
                    "secConnectionID": conn.conn_id,
                    "dataType": data_type,
                    "data": data,
                },
            }
            # A failing transport function is logged by the cloud; the socket stays open.
            with contextlib.suppress(Exception):
                await self.cloud.call(conn.api.transport, event, secrets.token_hex(16))

    async def _deny(
        self, scope: Scope, send: Send, code: ErrorCode, request_id: str, message: Any = None
    ) -> None:
        text = message if isinstance(message, str) and message else None
        body = json.dumps(AppError(code, text).envelope(request_id)).encode()
        status = 401 if code is ErrorCode.AUTH_REQUIRED else code.status
        if "websocket.http.response" in (scope.get("extensions") or {}):
            await send(
                {
                    "type": "websocket.http.response.start",
                    "status": status,
                    # uvicorn sets Content-Type and Content-Length of a refusal itself.
                    "headers": [(b"x-request-id", request_id.encode())],
                }
            )
            await send({"type": "websocket.http.response.body", "body": body})
        else:
            await send({"type": "websocket.close", "code": 1008})

    async def push(self, body: bytes) -> tuple[int, dict[str, Any]]:
        """The reverse-push URL: one `data send` or `closing` for one connection."""
        try:
            payload = json.loads(body or b"{}")
            ws = payload["websocket"]
            action, conn_id = ws["action"], ws["secConnectionID"]
        except (ValueError, TypeError, KeyError):
            return 400, {
                "errNo": 2,
                "errMsg": 'expected {"websocket": {"action", "secConnectionID", ...}}',
            }
        conn = self.connections.get(str(conn_id))
        if conn is None or conn.closed:
            return 200, {"errNo": 1, "errMsg": "connection not found"}
        try:
            if action == "data send":
                data = ws.get("data")
                text = data if isinstance(data, str) else json.dumps(data)
                await conn.send_frame(text, str(ws.get("dataType") or "text"))
            elif action == "closing":
                await conn.close()
            else:
                return 400, {"errNo": 2, "errMsg": f"unknown action {action!r}"}
        except Exception:  # noqa: BLE001 - the client went away mid-send
            log.warning("push to a closing connection", extra={"fields": {"conn_id": conn_id}})
            return 200, {"errNo": 1, "errMsg": "connection closed"}
        return 200, {"errNo": 0, "errMsg": "ok"}
