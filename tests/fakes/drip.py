"""A provider, or a proxy in front of one, that answers every request at once with its status
line and headers, then drips the body one byte every `interval_s`: each socket read of the
caller is quick, the whole answer takes `len(body) * interval_s`.

- `drip.url(path)`: where to point an adapter (any path, GET or POST).
- `drip.hung_up`: set when the caller closed the connection before the body was whole;
  `drip.sent`: the body's bytes written so far (of the last request).
"""

from __future__ import annotations

import select
import threading
from http.server import BaseHTTPRequestHandler
from typing import Any

from tests.fakes.server import LocalServer

BODY = b'{"code": "SYSTEM_ERROR", "message": "' + b"." * 80 + b'"}'


class Dripping(LocalServer):
    def __init__(self, body: bytes = BODY, interval_s: float = 0.2) -> None:
        self.body = body
        self.interval_s = interval_s
        self.hung_up = threading.Event()
        self.sent = 0

    def url(self, path: str = "") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def handler(self) -> type[BaseHTTPRequestHandler]:
        drip = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # each byte leaves as it is written

            def log_message(self, *_args: Any) -> None:
                pass

            def _serve(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self.close_connection = True
                drip.sent = 0
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(drip.body)))
                    self.end_headers()
                    self.wfile.flush()
                    for index in range(len(drip.body)):
                        # Readable while the caller waits for more: it hung up (EOF).
                        if select.select([self.connection], [], [], drip.interval_s)[0]:
                            drip.hung_up.set()
                            return
                        self.wfile.write(drip.body[index : index + 1])
                        self.wfile.flush()
                        drip.sent += 1
                except (BrokenPipeError, ConnectionResetError):
                    drip.hung_up.set()

            do_GET = _serve
            do_POST = _serve

        return _Handler
