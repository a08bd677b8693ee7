"""The API Gateway of the local cloud, as a plain ASGI app.

HTTP: match the request against the apigw routes of serverless.yml, build the event Tencent
API Gateway sends an event function (the full `queryString`, repeated keys as lists;
non-UTF-8 bodies base64 with `isBase64Encoded`; `pathParameters` from the route template;
a new `requestContext.requestId`; the client as `sourceIp`), call the function's
`main_handler` on the thread pool and turn its integration response back into HTTP. An
unknown path is `404 NOT_FOUND`, a known path with another method `405 METHOD_NOT_ALLOWED`,
both in the error envelope with `X-Request-Id`, as the deployed gateway is configured.

Dev-only endpoints under `/_local/` (never routed on SCF): fire a timer, publish to or
wait on the queue, and the WebSocket API's reverse-push URL.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
import secrets
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from app.errors import AppError, ErrorCode
from app.http.routing import compile_path
from infra.local.manifest import ApiRoute

if TYPE_CHECKING:
    from infra.local.cloud import LocalCloud

log = logging.getLogger("infra.local.gateway")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

_DEV_TIMER = re.compile(r"^/_local/timers/(?P<function>[^/]+)$")
_DEV_PUBLISH = re.compile(r"^/_local/queues/(?P<queue>[^/]+)/messages$")
JSON = "application/json; charset=utf-8"


class RouteTable:
    """apigw routes; static paths win over templated ones, as on API Gateway."""

    def __init__(self, routes: list[ApiRoute]) -> None:
        ordered = sorted(routes, key=lambda r: "{" in r.path)
        self._routes = [(route, compile_path(route.path)) for route in ordered]

    def match(self, method: str, path: str) -> tuple[ApiRoute | None, dict[str, str], bool]:
        """(route, path parameters, whether the path is known for some method)."""
        known = False
        for route, pattern in self._routes:
            found = pattern.match(path)
            if found is None:
                continue
            known = True
            if route.method in (method, "ANY"):
                return route, found.groupdict(), True
        return None, {}, known


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


def request_context(path: str, method: str, request_id: str, source_ip: str) -> dict[str, Any]:
    return {
        "serviceId": "service-local",
        "path": path,
        "httpMethod": method,
        "requestId": request_id,
        "identity": {},
        "sourceIp": source_ip,
        "stage": "release",
    }


def api_event(
    route: ApiRoute,
    params: dict[str, str],
    scope: Scope,
    body: bytes,
    request_id: str,
) -> dict[str, Any]:
    method = scope["method"].upper()
    headers = header_dict(scope.get("headers") or [])
    headers["x-api-requestid"] = request_id
    source_ip = (scope.get("client") or ("127.0.0.1", 0))[0]
    event: dict[str, Any] = {
        "httpMethod": method,
        "path": scope["path"],
        "headers": headers,
        "queryString": query_string(scope.get("query_string") or b""),
        # Holds only the parameters configured on the API; the local routes configure none.
        "queryStringParameters": {},
        "pathParameters": params,
        "headerParameters": {},
        "stageVariables": {"stage": "release"},
        "requestContext": request_context(route.path, method, request_id, source_ip),
        "isBase64Encoded": False,
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
) -> tuple[int, dict[str, str], bytes]:
    body = json.dumps(AppError(code, message).envelope(request_id)).encode()
    return code.status, {"Content-Type": JSON, "X-Request-Id": request_id}, body


def integration_reply(
    result: Any, request_id: str
) -> tuple[int, dict[str, str] | list[tuple[str, str]], bytes]:
    """An integration response back into status, headers and body."""
    if not isinstance(result, Mapping) or not isinstance(result.get("statusCode"), int):
        log.error(
            "function returned no integration response",
            extra={"fields": {"request_id": request_id}},
        )
        return error_reply(ErrorCode.INTERNAL_ERROR, request_id)
    raw_body = result.get("body")
    if raw_body is None:
        body = b""
    elif result.get("isBase64Encoded"):
        try:
            body = base64.b64decode(raw_body)
        except (binascii.Error, ValueError, TypeError):
            log.error("function returned bad base64", extra={"fields": {"request_id": request_id}})
            return error_reply(ErrorCode.INTERNAL_ERROR, request_id)
    else:
        body = (raw_body if isinstance(raw_body, str) else json.dumps(raw_body)).encode("utf-8")
    headers: list[tuple[str, str]] = []
    for name, value in (result.get("headers") or {}).items():
        for item in value if isinstance(value, list) else [value]:
            headers.append((str(name), str(item)))
    if not any(name.lower() == "x-request-id" for name, _ in headers):
        headers.append(("X-Request-Id", request_id))
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
    send: Send, status: int, headers: Mapping[str, str] | list[tuple[str, str]], body: bytes
) -> None:
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    raw = [
        (name.lower().encode("latin-1"), value.encode("latin-1"))
        for name, value in pairs
        if name.lower() not in ("content-length", "transfer-encoding", "connection")
    ]
    raw.append((b"content-length", str(len(body)).encode()))
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
    """The ASGI app: HTTP routes, dev endpoints and the WebSocket API."""

    def __init__(self, cloud: LocalCloud) -> None:
        from infra.local.websocket import WebSocketGateway

        self.cloud = cloud
        self.routes = RouteTable(cloud.manifest.routes)
        self.websockets = WebSocketGateway(cloud)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self.http(scope, receive, send)
        elif scope["type"] == "websocket":
            await self.websockets.serve(scope, receive, send)

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        request_id = secrets.token_hex(16)
        path, method = scope["path"], scope["method"].upper()
        body = await read_body(receive)
        if path.startswith("/_local/"):
            await self.dev(scope, path, method, body, send, request_id)
            return
        route, params, known = self.routes.match(method, path)
        if route is None:
            code = ErrorCode.METHOD_NOT_ALLOWED if known else ErrorCode.NOT_FOUND
            await respond(send, *error_reply(code, request_id))
            return
        event = api_event(route, params, scope, body, request_id)
        try:
            result = await self.cloud.call(route.function, event, request_id)
        except Exception:  # noqa: BLE001 - the function crashed: the gateway answers
            await respond(send, *error_reply(ErrorCode.INTERNAL_ERROR, request_id))
            return
        await respond(send, *integration_reply(result, request_id))

    async def dev(
        self, scope: Scope, path: str, method: str, body: bytes, send: Send, request_id: str
    ) -> None:
        query = query_string(scope.get("query_string") or b"")
        timer = _DEV_TIMER.match(path)
        publish = _DEV_PUBLISH.match(path)
        try:
            if method == "POST" and path == "/_local/ws/push":
                status, answer = await self.websockets.push(body)
                await respond_json(send, status, answer)
            elif method == "POST" and timer:
                trigger = query.get("trigger")
                result = await self.cloud.run_in_pool(
                    self.cloud.fire_timer, timer["function"], str(trigger) if trigger else None
                )
                await respond_json(send, 200, result, request_id)
            elif method == "POST" and publish:
                message = json.loads(body or b"{}")
                delay_s = float(query.get("delay_s") or 0)
                from app.queue.local import LocalBackend

                msg_id = LocalBackend().publish(publish["queue"], message, delay_s=delay_s)
                await respond_json(send, 200, {"msg_id": msg_id}, request_id)
            elif method == "GET" and path == "/_local/queues/idle":
                timeout = float(query.get("timeout") or 10)
                idle = await self.cloud.run_in_pool(self.cloud.broker.wait_idle, timeout)
                await respond_json(
                    send, 200, {"idle": idle, **self.cloud.broker.stats()}, request_id
                )
            else:
                await respond(send, *error_reply(ErrorCode.NOT_FOUND, request_id))
        except KeyError as error:
            await respond(send, *error_reply(ErrorCode.NOT_FOUND, request_id, str(error.args[0])))
        except (ValueError, TypeError) as error:
            await respond(send, *error_reply(ErrorCode.VALIDATION_ERROR, request_id, str(error)))
        except Exception:
            log.exception(
                "dev endpoint failed", extra={"fields": {"path": path, "request_id": request_id}}
            )
            await respond(send, *error_reply(ErrorCode.INTERNAL_ERROR, request_id))
