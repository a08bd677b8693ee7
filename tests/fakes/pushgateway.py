"""A fake Pushgateway: records each push (method, path with the grouping key, headers, body
in the text format) and answers as the real one does (200), or as told: another status, or
late (`hold()`: every request waits until `release()`)."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from tests.fakes.server import LocalServer


@dataclass(frozen=True)
class Push:
    method: str
    path: str
    headers: dict[str, str]
    body: str

    def sample(self, name: str, **labels: str) -> float | None:
        """The value of the sample `name` whose labels include `labels`, if pushed."""
        for family in text_string_to_metric_families(self.body):
            for sample in family.samples:
                if sample.name == name and labels.items() <= sample.labels.items():
                    return float(sample.value)
        return None


class FakePushgateway(LocalServer):
    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.pushes: list[Push] = []
        self.arrived = threading.Event()  # set by every request, as it arrives
        self._open = threading.Event()
        self._open.set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def hold(self) -> None:
        """Answer nothing until `release()`."""
        self._open.clear()

    def release(self) -> None:
        self._open.set()

    def handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_args: Any) -> None:
                pass

            def _record(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode()
                fake.pushes.append(Push(self.command, self.path, dict(self.headers), body))
                fake.arrived.set()
                fake._open.wait(30)
                try:
                    self.send_response(fake.status)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                except OSError:  # the pusher gave up waiting and hung up
                    pass

            do_PUT = do_POST = do_DELETE = _record

        return Handler
