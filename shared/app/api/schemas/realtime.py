"""The WebSocket (API.md "WebSocket") as the OpenAPI document describes it: the `ws`
function serves it with an ASGI app of its own (`app.events.websocket`), outside the route
table, so its handshake is described here, by hand, for `make openapi`."""

from __future__ import annotations

from pydantic import BaseModel, Field

from app.events.websocket import CLIENT_MESSAGE_MAX_BYTES
from app.http.openapi import WebSocket
from app.realtime.presence import CONNECT_WINDOW_S, CONNECTS_PER_WINDOW, MAX_PER_USER


class Handshake(BaseModel):
    token: str = Field(min_length=1, description="An access token, as a Bearer header carries")


WEBSOCKET = WebSocket(
    path="/ws",
    operation_id="connect_websocket",
    summary="Task updates over a WebSocket",
    description=(
        "Open with a WebSocket handshake (`Upgrade: websocket`); a request that is not one"
        " is 422, naming the `Upgrade` header. A missing or bad token, an ended session or a"
        " disabled account is refused with 401 before any upgrade; a user who holds"
        f" {MAX_PER_USER} connections, or has opened {CONNECTS_PER_WINDOW} in"
        f" {CONNECT_WINDOW_S // 60} minutes, with 429 (the latter with `Retry-After`).\n\n"
        'Server to client: `{"type": "task.updated", "id": "<message id>", "data": {"id",'
        ' "status", "output", "error", "updated_at"}}` for each status change of the'
        " user's own tasks; messages not acknowledged are sent again, in order, on"
        ' reconnecting (kept 24 h). Client to server: `{"type": "ack", "id": "<message'
        ' id>"}` acknowledges that message and every earlier one; `{"type": "ping"}` is'
        ' answered `{"type": "pong"}` (ping at least once a minute).\n\n'
        "Close codes: 1008 the token no longer authorizes (sign in or refresh, then"
        " reconnect); 1012 the connection reached its time limit (reconnect); 1013 try"
        " again later; 1001 nothing came from the client for too long (150 s by default);"
        f" 1009 a client message over {CLIENT_MESSAGE_MAX_BYTES} bytes; 1007 a text message"
        " that is not UTF-8."
    ),
    query=Handshake,
    errors=(401, 429, 503),
    tags=("realtime",),
)
