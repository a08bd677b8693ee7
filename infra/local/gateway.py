"""The custom domain and Function URLs of the local cloud, as a plain ASGI app.

HTTP: the path picks the function through the same mapping the custom domain gets
(`infra.routes`: exact pattern, else the longest `/x/*`, else `/*`), the request becomes the
event a Function URL sends an event function (`httpMethod`, the whole `path`, lower-case
`headers`, `queryString` with repeated names as lists, `body` as text) with the client's
address in `x-scf-remote-addr` (the socket's peer: nothing the client sends is taken for
it), the function's `main_handler` runs on the thread pool and its answer (`statusCode`,
`headers`, `body`) goes back as HTTP. Method routing, 404 and 405 are the functions' own, as
behind the real domain; a function that crashes, or answers something that is not a
payload, is a 502 from the platform.

WebSocket: a handshake whose path the mapping gives to a web function (serverless.yml
`web:`, `/ws`) is handed to that function's ASGI app, the one its `scf_bootstrap` serves on
SCF, and so is a plain HTTP request there (the app answers a GET 422, another method 405);
any other WebSocket handshake is refused (403), as the domain refuses an upgrade to an
event function.

Dev-only endpoints under `/_local/` (never routed on SCF): fire a timer, publish to or wait
on the queue. A function, timer or queue that is not there is a 404 naming it, a message over
SCF's event limit a 413.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import secrets
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol
from urllib.parse import parse_qsl

from app.errors import AppError, ErrorCode
from app.http.routing import compile_path
from app.queue.limits import PublishFailed
from infra import routes
from infra.routes import PathMapping

log = logging.getLogger("infra.local.gateway")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# The app's own path patterns: they end at `\Z`, since `$` also matches before a final
# newline, which a client sends as `%0A`.
_DEV_TIMER = compile_path("/_local/timers/{function}")
_DEV_PUBLISH = compile_path("/_local/queues/{queue}/messages")
JSON = "application/json; charset=utf-8"
CLIENT_ADDRESS = "x-scf-remote-addr"


class Platform(Protocol):
    """What the gateway needs of the local cloud."""

    async def call(self, function: str, event: dict[str, Any], request_id: str) -> Any: ...

    async def run_in_pool(self, fn: Callable[..., Any], *args: Any) -> Any: ...

    def fire_timer(self, function: str, trigger: str | None = None) -> Any: ...

    def publish(self, function: str, message: Any, delay_s: float = 0) -> str: ...

    def queue_idle(self, timeout: float) -> dict[str, Any]: ...

    def web_app(self, function: str) -> ASGIApp | None: ...


def query_string(raw: bytes) -> dict[str, Any]:
    query: dict[str, Any] = {}
    for key, value in parse_qsl(raw.decode("latin-1"), keep_blank_values=True):
        if key in query:
            previous = query[key]
            query[key] = [*previous, value] if isinstance(previous, list) else [previous, value]
        else:
            query[key] = value
    return query


def header_dict(raw: list[tuple[bytes, bytes]]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for name, value in raw:
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        headers[key] = f"{headers[key]},{text}" if key in headers else text
    return headers


def function_url_event(scope: Scope, body: bytes) -> dict[str, Any]:
    headers = header_dict(scope.get("headers") or [])
    headers[CLIENT_ADDRESS] = (scope.get("client") or ("127.0.0.1", 0))[0]
    event: dict[str, Any] = {
        "httpMethod": scope["method"].upper(),
        "path": scope["path"],
        "headers": headers,
        "queryString": query_string(scope.get("query_string") or b""),
        "body": "",
    }
    if body:
        try:
            event["body"] = body.decode("utf-8")
        except UnicodeDecodeError:
            event["body"] = base64.b64encode(body).decode("ascii")
            event["isBase64Encoded"] = True
    return event


def error_reply(
    code: ErrorCode, request_id: str, message: str | None = None
) -> tuple[int, list[tuple[str, str]], bytes]:
    body = json.dumps(AppError(code, message).envelope(request_id)).encode()
    return code.status, [("Content-Type", JSON), ("X-Request-Id", request_id)], body


def platform_error(request_id: str) -> tuple[int, list[tuple[str, str]], bytes]:
    """What the platform answers for a function that failed: 502, not one of our codes."""
    body = json.dumps({"error": "function error", "request_id": request_id}).encode()
    return 502, [("Content-Type", JSON), ("X-Request-Id", request_id)], body


def http_reply(result: Any, request_id: str) -> tuple[int, list[tuple[str, str]], bytes]:
    """A function's answer back into status, headers and body."""
    if not isinstance(result, Mapping) or not isinstance(result.get("statusCode"), int):
        log.error("function answered no payload", extra={"fields": {"request_id": request_id}})
        return platform_error(request_id)
    raw_body = result.get("body")
    if raw_body is None:
        body = b""
    elif result.get("isBase64Encoded"):
        try:
            body = base64.b64decode(raw_body)
        except (binascii.Error, ValueError, TypeError):
            log.error("function returned bad base64", extra={"fields": {"request_id": request_id}})
            return platform_error(request_id)
    else:
        body = (raw_body if isinstance(raw_body, str) else json.dumps(raw_body)).encode("utf-8")
    headers: list[tuple[str, str]] = []
    for name, value in (result.get("headers") or {}).items():
        for item in value if isinstance(value, list) else [value]:
            headers.append((str(name), str(item)))
    return int(result["statusCode"]), headers, body


async def read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunks.append(message.get("body") or b"")
        if not message.get("more_body"):
            break
    return b"".join(chunks)


async def respond(
    send: Send,
    status: int,
    headers: Mapping[str, str] | list[tuple[str, str]],
    body: bytes,
    *,
    head: bool = False,
) -> None:
    """The answer as HTTP, its length the body's; to a HEAD (`head`), which has no body, the
    length the function states, that of the body a GET gets (RFC 9110 9.3.2)."""
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    length = str(len(body))
    raw = []
    for name, value in pairs:
        lower = name.lower()
        if lower == "content-length" and head and value.isdigit():
            length = value
        if lower not in ("content-length", "transfer-encoding", "connection"):
            raw.append((lower.encode("latin-1"), value.encode("latin-1")))
    raw.append((b"content-length", length.encode()))
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


async def respond_json(send: Send, status: int, value: Any, request_id: str | None = None) -> None:
    headers = {"Content-Type": JSON}
    if request_id:
        headers["X-Request-Id"] = request_id
    await respond(
        send, status, headers, json.dumps(value, ensure_ascii=False, default=str).encode()
    )


class Gateway:
    """The ASGI app: the domain's path mapping to the functions, and the dev endpoints."""

    def __init__(self, platform: Platform, mappings: list[PathMapping]) -> None:
        self.platform = platform
        self.mappings = mappings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self.http(scope, receive, send)
        elif scope["type"] == "websocket":
            await self.websocket(scope, receive, send)

    async def websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        function = routes.resolve(self.mappings, scope["path"])
        app = None if function is None else self.platform.web_app(function)
        if app is None:
            await receive()  # the handshake's websocket.connect
            await send({"type": "websocket.close", "code": 1008})
            return
        await app(scope, receive, send)

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        request_id = secrets.token_hex(16)
        path, method = scope["path"], scope["method"].upper()
        if path.startswith("/_local/"):
            await self.dev(scope, path, method, await read_body(receive), send, request_id)
            return
        function = routes.resolve(self.mappings, path)
        web = None if function is None else self.platform.web_app(function)
        if web is not None:  # its own server answers every request, as on SCF: not an event
            await web(scope, receive, send)
            return
        body = await read_body(receive)
        if function is None:  # no function: the domain itself answers
            await respond(send, *error_reply(ErrorCode.NOT_FOUND, request_id))
            return
        try:
            result = await self.platform.call(function, function_url_event(scope, body), request_id)
        except Exception:  # noqa: BLE001 - the function crashed: the platform answers
            await respond(send, *platform_error(request_id))
            return
        await respond(send, *http_reply(result, request_id), head=method == "HEAD")

    async def dev(
        self, scope: Scope, path: str, method: str, body: bytes, send: Send, request_id: str
    ) -> None:
        query = query_string(scope.get("query_string") or b"")
        timer = _DEV_TIMER.match(path)
        publish = _DEV_PUBLISH.match(path)
        try:
            if method == "POST" and timer:
                trigger = query.get("trigger")
                result = await self.platform.run_in_pool(
                    self.platform.fire_timer, timer["function"], str(trigger) if trigger else None
                )
                await respond_json(send, 200, result, request_id)
            elif method == "POST" and publish:
                message = json.loads(body or b"{}")
                delay_s = float(query.get("delay_s") or 0)
                msg_id = self.platform.publish(publish["queue"], message, delay_s)
                await respond_json(send, 200, {"msg_id": msg_id}, request_id)
            elif method == "GET" and path == "/_local/queues/idle":
                timeout = float(query.get("timeout") or 10)
                stats = await self.platform.run_in_pool(self.platform.queue_idle, timeout)
                await respond_json(send, 200, stats, request_id)
            else:
                await respond(send, *error_reply(ErrorCode.NOT_FOUND, request_id))
        except KeyError as error:
            await respond(send, *error_reply(ErrorCode.NOT_FOUND, request_id, str(error.args[0])))
        except PublishFailed as error:  # over SCF's event limit: what production refuses too
            await respond(send, *error_reply(ErrorCode.PAYLOAD_TOO_LARGE, request_id, str(error)))
        except (ValueError, TypeError) as error:
            await respond(send, *error_reply(ErrorCode.VALIDATION_ERROR, request_id, str(error)))
        except Exception:
            log.exception(
                "dev endpoint failed", extra={"fields": {"path": path, "request_id": request_id}}
            )
            await respond(send, *error_reply(ErrorCode.INTERNAL_ERROR, request_id))
