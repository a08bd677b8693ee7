"""The `ws` web function: a plain ASGI app that serves one user's task updates over a
WebSocket (API.md, "WebSocket"). On SCF, `scf_bootstrap` serves it with uvicorn on port
9000, one connection per instance; the local cloud mounts the same app at `/ws`. The
function's `index.py` makes it with `websocket_app()`, which reads the instance's settings
once, as the other adapters do when their handlers are made: a refused instance fails
uvicorn's import of `index:app`, and its process exits before it serves anything.

The handshake (`/ws?token=<access token>`) is authorized as every request is
(`app.identity.access`): a missing, bad or expired token, an ended session, a disabled or
deleted user is refused with HTTP 401 and the API's error body, before any upgrade (503
when neither Redis nor the database can tell; 429 RATE_LIMITED for a user who holds
`presence.MAX_PER_USER` connections already, or with Retry-After for one who has opened
`presence.CONNECTS_PER_WINDOW` in its window). A GET that is not a handshake is
422 VALIDATION_ERROR naming the `Upgrade` header, with `Upgrade: websocket`; another
method, 405 METHOD_NOT_ALLOWED (those answers: `app.events.websocket_handshake`). A client
gone while its handshake is judged is let go at once, not counted connected. Then, for
the connection's life:

- updates: the user's stream (`app.realtime.streams`) is read from the position the
  token's session (the device) acknowledged (or 24 h ago, whichever is later) with
  `XREAD BLOCK`, so what was not acknowledged comes first, in order and with its ids, and
  each new message follows as it is appended. Only the user's own stream is ever read.
- from the client: `{"type": "ack", "id"}` moves the session's acknowledged position
  (`app.realtime.acks`: ACK_BURST at once and ACKS_PER_S after that, acks past them merged
  into the latest and applied as the allowance refills or at the end, so a client that
  floods acks costs Redis a few scripts a second); `{"type": "ping"}` is answered
  `{"type": "pong"}`; anything else is ignored. Pongs are PONG_BURST at once and
  PONGS_PER_S after that: a ping past them is ignored, so a client that sends pings and
  never reads the pongs cannot grow the connection's send buffer without end. A message
  over CLIENT_MESSAGE_MAX_BYTES closes the connection with 1009 (message too big), which
  the server does before it has read the frame; a text message that is not UTF-8, with
  1007 (`app.events.uvicorn_log` keeps uvicorn's ERROR for it out).
- presence (`app.realtime.presence`) is held while the connection is open, so a task that
  ends now sends no WeChat subscription message.
- revocation: the token is authorized again every REAUTH_S (10 s); a logout, an ended
  session, a disabled account or an expired token closes the connection with 1008.
- the end: after WS_MAX_CONNECTION_S (set below the function's time limit, so the platform
  never cuts the connection with its own 433) the server closes with 1012 (service
  restart): reconnect. If Redis fails, 1013 (try again later). A connection from which no
  message at all has come for WS_CLIENT_SILENCE_S (150 s: the contract's pings are a minute
  apart at most) is closed with 1001 (going away): a client whose network vanished without
  a close (no FIN, no RST) is otherwise noticed by TCP only after some 15 minutes, the
  updates sent meanwhile keeping the platform's idle timer from firing, and its presence
  holds back the WeChat message of every task that ends meanwhile. The platform's idle
  timeout (`idle_timeout_s` in serverless.yml, closing with its code 455) closes a
  connection that carries nothing for that long: clients ping.

Every line written for a connection, in its tasks and the threads they start too, carries
its ids (`app.observability.logging.bound`): the function, the connection's request id and
id, and once the token is authorized its user and session.

Nothing else can push into this instance (SCF has no API for it): the instance pulls.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from app.config import get_settings
from app.errors import AppError, ErrorCode
from app.events import uvicorn_log
from app.events import websocket_handshake as handshake
from app.identity import access
from app.identity.principal import Principal
from app.observability import logging as applog
from app.realtime import acks, presence, streams
from app.realtime.allowance import Allowance
from app.realtime.streams import StreamId, Update
from app.redis_client import build_async_redis, is_redis_error
from app.startup import instance_settings

log = applog.get_logger("app.events.websocket")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

BLOCK_MS = 10_000
BATCH = 100
# fakeredis (memory://, the embedded default) answers a blocking read at once when it has
# nothing: wait this long before asking again, rather than spin.
EMPTY_PAUSE_S = 0.02
CLOSE_RECONNECT = 1012  # service restart: the client reconnects at once
CLOSE_TRY_LATER = 1013  # Redis is unavailable: the client reconnects after a pause
CLOSE_NOT_ALLOWED = 1008  # the token no longer authorizes: sign in (or refresh) again
CLOSE_SILENT = 1001  # going away: nothing came from the client for WS_CLIENT_SILENCE_S
# How often an open connection's token is authorized again, as a request would be: a
# logout, a disabled account or an expired token ends the connection within this long.
REAUTH_S = 10.0
# How long the end of a connection waits for its jobs and Redis to let go.
CLEANUP_S = 2.0
# How often a job that has not stopped is cancelled again while the connection ends.
CANCEL_AGAIN_S = 0.05
# The largest message a client may send: an ack is under 60 bytes. The server enforces it
# (`--ws-max-size` in `scf_bootstrap`, the local cloud's `ws_max_size`), so a frame of
# megabytes is refused before it is buffered: uvicorn's default takes 16 MiB, and 14 MiB
# of `[],` parse to some 400 MB, past the function's 128 MB.
CLIENT_MESSAGE_MAX_BYTES = 4096
# A client pings to keep an idle connection open (every 30 s or so); one that pings faster
# than this has its pings past the burst ignored.
PONG_BURST = 10
PONGS_PER_S = 1.0


class ClientGone(Exception):
    """The client closed the connection (or it broke) while a message was being sent."""


@dataclass(frozen=True)
class Closing:
    code: int
    reason: str


class Connection:
    """One accepted connection of one user."""

    def __init__(
        self, principal: Principal, id_: str, token: str, receive: Receive, send: Send
    ) -> None:
        self.user_id = principal.user_id
        self.session_id = principal.sid  # the signed-in device, whose position is its own
        self.token = token
        self.id = id_
        self._receive = receive
        self._send = send
        self._sending = asyncio.Lock()
        # The code the client's side ended with (1007 for a text message not UTF-8, 1009
        # for one too big, the client's own close code), for the log.
        self.client_code: int | None = None
        self._pongs = Allowance(PONG_BURST, PONGS_PER_S)
        settings = get_settings()
        self.max_s = settings.ws_max_connection_s
        self.silence_s = settings.ws_client_silence_s
        # When the client's last message came (the open counts as one): `_client_silence`
        # closes the connection WS_CLIENT_SILENCE_S after it.
        self.heard_at = time.monotonic()
        # A blocking read holds the socket for BLOCK_MS: the client's read timeout is longer.
        self.redis = build_async_redis(settings.redis_url, socket_timeout=BLOCK_MS / 1000 + 5)
        self.acks = acks.Acknowledgements(self.redis, self.user_id, self.session_id)

    async def send_text(self, text: str) -> None:
        async with self._sending:
            try:
                await self._send({"type": "websocket.send", "text": text})
            # A client may close at any moment, a replay included: ASGI's send on a closed
            # connection raises an OSError (uvicorn's ClientDisconnected), and uvicorn's
            # RuntimeError once it has closed the connection itself (1009).
            except (OSError, RuntimeError) as gone:
                raise ClientGone from gone

    async def open(self) -> AppError | None:
        """Count the user as connected before the handshake completes, so that a task ending
        once the client is connected never also sends a subscription message. None once
        counted; else why the handshake is refused (the client closed): 429 RATE_LIMITED
        when the user holds `presence.MAX_PER_USER` connections already or has opened
        `presence.CONNECTS_PER_WINDOW` in the window (with Retry-After), 503 when Redis
        cannot take it."""
        try:
            admission = await presence.admit(self.redis, self.user_id, self.id)
        except Exception as exc:
            await self.redis.aclose()
            if not is_redis_error(exc):
                raise
            applog.log_fields(
                log, logging.WARNING, "presence unavailable", error=type(exc).__name__
            )
            return AppError(ErrorCode.SERVICE_UNAVAILABLE, "Updates are unavailable.")
        if admission.admitted:
            return None
        await self.redis.aclose()
        if admission.verdict == "often":
            return AppError(
                ErrorCode.RATE_LIMITED,
                "Too many connections opened; try again later.",
                headers={"Retry-After": str(admission.retry_after_s)},
            )
        return AppError(
            ErrorCode.RATE_LIMITED,
            f"At most {presence.MAX_PER_USER} connections at once: close one first.",
        )

    async def accept(self) -> bool:
        """Complete the handshake; False when the client went away while it was judged
        (uvicorn then refuses the accept): the connection is let go of at once, rather than
        counted among the user's connections until its entry lapses."""
        try:
            await self._send({"type": "websocket.accept"})
        except (OSError, RuntimeError):
            await self._let_go()
            applog.log_fields(log, logging.INFO, "connection closed", reason="client gone")
            return False
        return True

    async def _let_go(self) -> None:
        """The connection's presence and Redis client, each given CLEANUP_S at most."""
        with contextlib.suppress(Exception):
            await asyncio.wait_for(presence.leave(self.redis, self.user_id, self.id), CLEANUP_S)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.redis.aclose(), CLEANUP_S)

    async def serve(self) -> None:
        started = time.monotonic()
        jobs = [
            asyncio.ensure_future(self._forward()),
            asyncio.ensure_future(self._listen()),
            asyncio.ensure_future(self._stay_present()),
            asyncio.ensure_future(self._still_authorized()),
            asyncio.ensure_future(self._time_limit()),
            asyncio.ensure_future(self._client_silence()),
            asyncio.ensure_future(self.acks.apply_held()),
        ]
        closing: Closing | None = None
        try:
            done, _ = await asyncio.wait(jobs, return_when=asyncio.FIRST_COMPLETED)
            closing = self._closing(done.pop())
        finally:
            # The close goes first: a job cancelled in the middle of a blocking read may
            # take a while to let go, and the client must not wait for it. But the held ack
            # is recorded before it: a client told to reconnect does so at once, and its next
            # connection starts from the recorded position.
            if closing is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self.acks.flush(), CLEANUP_S)
                with contextlib.suppress(Exception):  # the client may already be gone
                    async with self._sending:
                        await self._send(
                            {
                                "type": "websocket.close",
                                "code": closing.code,
                                "reason": closing.reason,
                            }
                        )
            await _stop(jobs)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.acks.flush(), CLEANUP_S)
            await self._let_go()
            applog.log_fields(
                log,
                logging.INFO,
                "connection closed",
                held_s=round(time.monotonic() - started, 3),
                code=closing.code if closing else None,
                reason=closing.reason if closing else None,
                client_code=self.client_code,
            )

    def _closing(self, job: asyncio.Future[Any]) -> Closing | None:
        """How the connection ends once `job` has: None when the client went away."""
        error = job.exception()
        if error is None:
            result = job.result()
            return result if isinstance(result, Closing) else None
        if isinstance(error, ClientGone):
            return None
        if is_redis_error(error):
            applog.log_fields(
                log, logging.WARNING, "connection lost Redis", error=type(error).__name__
            )
            return Closing(CLOSE_TRY_LATER, "updates unavailable")
        applog.log_fields(log, logging.ERROR, "connection failed", error=type(error).__name__)
        return Closing(1011, "internal error")

    async def _start(self) -> StreamId:
        floor = streams.oldest_kept(int(time.time() * 1000))
        acked = await acks.position(self.redis, self.user_id, self.session_id)
        return max(floor, acked) if acked is not None else floor

    async def _forward(self) -> None:
        """Send every message after the acknowledged position, then each new one."""
        key = streams.stream_key(self.user_id)
        cursor = str(await self._start())
        while True:
            asked = time.monotonic()
            reply = await self.redis.xread({key: cursor}, count=BATCH, block=BLOCK_MS)
            if not reply:
                if time.monotonic() - asked < BLOCK_MS / 2000:
                    await asyncio.sleep(EMPTY_PAUSE_S)
                continue
            for _stream, entries in reply:
                for entry_id, fields in entries:
                    await self.send_text(Update.of_entry(entry_id, fields).frame())
                    cursor = entry_id
                    self.acks.sent(entry_id)

    async def _listen(self) -> None:
        """The client's messages, until it goes away."""
        while True:
            message = await self._receive()
            if message["type"] == "websocket.disconnect":
                self.client_code = message.get("code")
                return
            if message["type"] != "websocket.receive":
                continue
            self.heard_at = time.monotonic()  # any message, even one ignored below
            raw = message.get("text")
            if raw is None and message.get("bytes") is not None:
                raw = message["bytes"].decode("utf-8", "replace")
            try:
                parsed = json.loads(raw or "")
            except (ValueError, RecursionError):  # nested past the parser's depth: ignored too
                continue
            if not isinstance(parsed, dict):
                continue
            if parsed.get("type") == "ping":
                if self._pongs.take():
                    await self.send_text('{"type":"pong"}')
            elif parsed.get("type") == "ack" and isinstance(parsed.get("id"), str):
                acked = StreamId.parse(parsed["id"])
                if acked is not None:
                    await self.acks.ack(acked)

    async def _stay_present(self) -> None:
        while True:
            await asyncio.sleep(presence.REFRESH_S)
            await presence.enter(self.redis, self.user_id, self.id)

    async def _still_authorized(self) -> Closing:
        """Revocation reaches an open connection too: the token is authorized again every
        REAUTH_S; when Redis and the database cannot tell, the connection stays."""
        while True:
            await asyncio.sleep(REAUTH_S)
            try:
                await asyncio.to_thread(access.authorize, self.token)
            except AppError as refused:
                if refused.code is not ErrorCode.SERVICE_UNAVAILABLE:
                    return Closing(CLOSE_NOT_ALLOWED, refused.code.value)
                applog.log_fields(
                    log, logging.WARNING, "connection not reauthorized", error=refused.code.value
                )
            except Exception as exc:  # noqa: BLE001 - undecided: judged again next time
                applog.log_fields(
                    log, logging.WARNING, "connection not reauthorized", error=type(exc).__name__
                )

    async def _time_limit(self) -> Closing:
        await asyncio.sleep(self.max_s)
        return Closing(CLOSE_RECONNECT, "connection time limit: reconnect")

    async def _client_silence(self) -> Closing:
        """Close a connection from which nothing has come for `silence_s`: the updates sent
        into it keep the platform's idle timer from firing. A timer set to the deadline of
        the last message heard, set again when one came meanwhile."""
        while (left := self.heard_at + self.silence_s - time.monotonic()) > 0:
            await asyncio.sleep(left)
        return Closing(CLOSE_SILENT, "client silent: reconnect")


async def _stop(jobs: Iterable[asyncio.Future[Any]]) -> None:
    """Cancel the jobs and wait, CLEANUP_S at most, for them to end. A cancel that lands as a
    Redis command completes is lost (redis-py sends each through `asyncio.wait_for`, which
    drops it before Python 3.12), and the job goes on into its next blocking read, holding
    the connection's presence meanwhile: a job still running is cancelled again."""
    deadline = time.monotonic() + CLEANUP_S
    pending = set(jobs)
    while pending and (left := deadline - time.monotonic()) > 0:
        for job in pending:
            job.cancel()
        _, pending = await asyncio.wait(pending, timeout=min(CANCEL_AGAIN_S, left))


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def websocket_app() -> App:
    """The `ws` function's ASGI app, made once per instance when its module is imported. The
    settings are read here, as the HTTP, queue and timer adapters read theirs: an instance
    that refuses them writes `instance refused to start` and raises, so uvicorn's import of
    `index:app` fails and SCF sees the instance fail its start, rather than one that answers
    every handshake with an error. It also makes the app's lines JSON on stdout, as every
    function's are: uvicorn configures only its own loggers."""
    instance_settings()
    return _app


async def _app(scope: Scope, receive: Receive, send: Send) -> None:
    """The ASGI app (`websocket_app`)."""
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
        return
    # Every line of the request or connection names them, a service's too: the context is
    # the connection's task's own (uvicorn runs each in one), copied into the tasks it starts
    # and into `asyncio.to_thread`, so two connections of one process never mix their ids.
    request_id = secrets.token_hex(16)
    with applog.bound(function=_function_name(), request_id=request_id):
        if scope["type"] != "websocket":
            await handshake.not_a_websocket(scope, send, request_id)
            return
        await _connect(scope, receive, send, request_id)


def _function_name() -> str:
    """The function as SCF names it in its instance's environment (`<app>-<stage>-ws`, as
    the other functions' lines name theirs); the manifest's name where nothing sets it (the
    local cloud serves every function in one process)."""
    return os.environ.get("SCF_FUNCTIONNAME") or "ws"


async def _connect(scope: Scope, receive: Receive, send: Send, request_id: str) -> None:
    uvicorn_log.install()
    first = await receive()
    if first["type"] != "websocket.connect":
        return
    connection_id = secrets.token_hex(8)
    applog.bind(connection=connection_id)
    principal = await handshake.authorize(scope, send, request_id)
    if principal is None:
        return
    # Before the connection's tasks start: each takes a copy of the context as it is then.
    applog.bind(user_id=principal.user_id, session_id=principal.sid)
    connection = Connection(principal, connection_id, handshake.token_of(scope), receive, send)
    refusal = await connection.open()
    if refusal is not None:
        await handshake.refuse(scope, send, refusal, refusal.status, request_id)
        return
    if await connection.accept():
        await connection.serve()
