"""A fake upstream AI host: a threaded HTTP server on 127.0.0.1 that records every call and
how many were in flight at once, and answers as each path is scripted to.

    with FakeUpstream() as up:
        up.script("/render", lambda call: Answer(200, {"ok": call.body["input"]}, delay_s=0.05))
        up.url("/render")  # -> http://127.0.0.1:<port>/render
"""

from __future__ import annotations

import json
import select
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

from tests.fakes.server import LocalServer


@dataclass
class Call:
    path: str
    headers: dict[str, str]
    body: Any
    started: float
    ended: float = 0.0


@dataclass
class Answer:
    status: int = 200
    body: Any = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    raw: bytes | None = None
    # > 0: the body goes out one byte at a time this many seconds apart (each read is
    # quick, the whole answer slow), and the call stays in flight until the caller hangs up
    # or the last byte is sent.
    trickle_s: float = 0.0
    # > 0: the body is a JSON string this many bytes long, made as it is sent (an answer
    # of hundreds of MB never sits in the fake's memory).
    filler_bytes: int = 0


Script = Callable[[Call], Answer]


def echo(call: Call) -> Answer:
    return Answer(200, {"echo": call.body.get("input"), "branch": call.body.get("branch")})


class FakeUpstream(LocalServer):
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._scripts: dict[str, Script] = {}
        self.calls: list[Call] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._in_flight_to: Counter[str] = Counter()
        self._max_in_flight_to: Counter[str] = Counter()

    def script(self, path: str, script: Script) -> None:
        with self._lock:
            self._scripts[path] = script

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def max_in_flight_to(self, path: str) -> int:
        """The most calls to `path` that were in flight at once."""
        with self._lock:
            return self._max_in_flight_to[path]

    def calls_to(self, path: str) -> list[Call]:
        with self._lock:
            return [c for c in self.calls if c.path == path]

    def reset_counts(self) -> None:
        with self._lock:
            self.calls = []
            self.max_in_flight = 0
            self._max_in_flight_to.clear()

    def _serve(self, path: str, headers: dict[str, str], raw: bytes) -> tuple[Call, Answer]:
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        call = Call(path, headers, body, time.monotonic())
        with self._lock:
            self.calls.append(call)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            self._in_flight_to[path] += 1
            self._max_in_flight_to[path] = max(
                self._max_in_flight_to[path], self._in_flight_to[path]
            )
            script = self._scripts.get(path, echo)
        answer = None
        try:
            answer = script(call)
            if answer.delay_s:
                time.sleep(answer.delay_s)
            return call, answer
        finally:
            if answer is None or not answer.trickle_s:
                self._ended(call)

    def _ended(self, call: Call) -> None:
        with self._lock:
            self.in_flight -= 1
            self._in_flight_to[call.path] -= 1
            call.ended = time.monotonic()

    def handler(self) -> type[BaseHTTPRequestHandler]:
        upstream = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out as separate writes: without TCP_NODELAY, Nagle and the
            # client's delayed ACK add ~40 ms to every keep-alive answer.
            disable_nagle_algorithm = True

            def log_message(self, *_args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                headers = {k.lower(): v for k, v in self.headers.items()}
                call, answer = upstream._serve(self.path, headers, raw)
                payload = answer.raw if answer.raw is not None else json.dumps(answer.body).encode()
                length = answer.filler_bytes or len(payload)
                try:
                    self.send_response(answer.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(length))
                    for key, value in answer.headers.items():
                        self.send_header(key, value)
                    self.end_headers()
                    if answer.trickle_s:
                        self._trickle(payload, answer.trickle_s)
                    elif answer.filler_bytes:
                        self._filler(answer.filler_bytes)
                    else:
                        self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):  # the caller timed out
                    pass
                finally:
                    if answer.trickle_s:
                        upstream._ended(call)

            def _filler(self, size: int) -> None:
                self.wfile.write(b'"')
                left = size - 2
                piece = b"x" * 65536
                while left > 0:
                    self.wfile.write(piece[:left])
                    left -= len(piece)
                self.wfile.write(b'"')

            def _trickle(self, payload: bytes, interval_s: float) -> None:
                for index in range(len(payload)):
                    self.wfile.write(payload[index : index + 1])
                    self.wfile.flush()
                    # readable while waiting = the caller hung up (nothing else comes)
                    if select.select([self.connection], [], [], interval_s)[0]:
                        self.close_connection = True
                        return

        return _Handler
