"""The `ws` function's answers before a connection is accepted (app.events.websocket): the
token a handshake carries and whom it authorizes, the HTTP answer a refused handshake gets in
the API's error shape, and the answer to a request that is not a handshake at all."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs

from app.errors import AppError, ErrorCode
from app.events import uvicorn_log
from app.identity import access
from app.identity.principal import Principal
from app.observability import logging as applog

log = applog.get_logger("app.events.websocket")

Scope = dict[str, Any]
Send = Callable[[dict[str, Any]], Awaitable[None]]

JSON_TYPE = b"application/json; charset=utf-8"


def token_of(scope: Scope) -> str:
    query = parse_qs((scope.get("query_string") or b"").decode("latin-1"))
    values = query.get("token") or [""]
    return str(values[-1])


async def refuse(scope: Scope, send: Send, error: AppError, status: int, request_id: str) -> None:
    # Logged here, and not again by uvicorn (app.events.uvicorn_log). A refusal is the
    # answer the contract asks for, not a failure: a 503's cause (the database, Redis) is
    # logged where it is met, so the refusal itself is a warning at most.
    uvicorn_log.mark_refused()
    with_body = "websocket.http.response" in (scope.get("extensions") or {})
    applog.log_fields(
        log,
        logging.WARNING if status >= 500 else logging.INFO,
        "handshake refused",
        status=status if with_body else 403,
        error=error.code.value,
        request_id=request_id,
    )
    # A client gone while its handshake was judged has nothing to be answered: uvicorn then
    # refuses the answer (a RuntimeError, or an OSError), which must not reach it as the
    # app's failure, an ERROR and a traceback any client could write at will.
    with contextlib.suppress(OSError, RuntimeError):
        if not with_body:
            await send({"type": "websocket.close", "code": 1008})  # the server answers 403
            return
        body = json.dumps(error.envelope(request_id)).encode()
        headers = [(b"content-type", JSON_TYPE), (b"x-request-id", request_id.encode())]
        headers += [
            (name.lower().encode(), value.encode()) for name, value in error.headers.items()
        ]
        start = {"type": "websocket.http.response.start", "status": status, "headers": headers}
        await send(start)
        await send({"type": "websocket.http.response.body", "body": body})


async def authorize(scope: Scope, send: Send, request_id: str) -> Principal | None:
    """Whom the handshake's token authorizes, or None once the handshake has been refused."""
    token = token_of(scope)
    if not token:
        no_token = AppError(ErrorCode.AUTH_REQUIRED, "No token.")
        await refuse(scope, send, no_token, 401, request_id)
        return None
    try:
        principal = await asyncio.to_thread(access.authorize, token)
    except AppError as error:
        # The database layer says it is down with an AppError too: that is not the token's
        # fault, and a client told 401 would sign its user out.
        status = 503 if error.code is ErrorCode.SERVICE_UNAVAILABLE else 401
        await refuse(scope, send, error, status, request_id)
        return None
    except Exception as exc:  # noqa: BLE001 - neither Redis nor the database could answer
        applog.log_fields(log, logging.ERROR, "handshake not authorized", error=type(exc).__name__)
        unavailable = AppError(ErrorCode.SERVICE_UNAVAILABLE, "Try again shortly.")
        await refuse(scope, send, unavailable, 503, request_id)
        return None
    return principal


async def not_a_websocket(scope: Scope, send: Send, request_id: str) -> None:
    """A request that is not a handshake. A GET (or HEAD) is the request's fault:
    VALIDATION_ERROR naming the header that makes one, at the status the API gives that
    code (422; a code keeps one status everywhere), with `Upgrade: websocket` saying what
    would be taken. Any other method is 405 METHOD_NOT_ALLOWED with `Allow`, as a route
    table answers a method its path does not serve (a handshake is a GET)."""
    if scope.get("method", "GET") in ("GET", "HEAD"):
        error = AppError(
            ErrorCode.VALIDATION_ERROR,
            "Connect with a WebSocket: /ws?token=<access_token>.",
            details=[{"loc": ["header", "Upgrade"], "msg": "must be websocket"}],
            headers={"Upgrade": "websocket"},
        )
    else:
        error = AppError(ErrorCode.METHOD_NOT_ALLOWED, headers={"Allow": "GET, HEAD"})
    body = json.dumps(error.envelope(request_id)).encode()
    status = error.status
    applog.log_fields(log, logging.INFO, "not a websocket", status=status)
    headers = [
        (b"content-type", JSON_TYPE),
        (b"content-length", str(len(body)).encode()),
        (b"x-request-id", request_id.encode()),
        *((name.lower().encode(), value.encode()) for name, value in error.headers.items()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
