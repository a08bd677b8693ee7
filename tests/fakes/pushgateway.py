"""A fake Pushgateway: records each push (method, path with the grouping key, headers, body
in the text format) and answers as the real one does (200), or as told: another status, or
late (`hold()`: every request waits until `release()`).

As the real one (prometheus/pushgateway, storage `sanitizeLabels` and `checkWriteRequest`),
it sets the grouping key's labels on every pushed series "no matter what", overwriting a
label of the same name the series carried (`Push.stored` is what it would expose); with
`consistency_check` (the real one's default) it refuses with 400 a push in which two series
of one metric then have the same labels. The check is asked for: a test process serves many
functions, which one SCF instance never does, so its HTTP series pushed under one
`function` would collide where an instance's never do."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import unquote

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

    @property
    def grouping_key(self) -> dict[str, str]:
        """The labels of the path after `/metrics/` (any prefix before it ignored)."""
        parts = [unquote(part) for part in self.path.split("/metrics/", 1)[1].split("/")]
        return dict(zip(parts[::2], parts[1::2], strict=True))

    @property
    def stored(self) -> list[tuple[str, dict[str, str], float]]:
        """(name, labels, value) of every sample as the Pushgateway keeps it: the grouping
        key's labels set over the pushed ones, `instance` added empty when absent."""
        found = []
        for family in text_string_to_metric_families(self.body):
            for sample in family.samples:
                labels = {"instance": "", **sample.labels, **self.grouping_key}
                found.append((sample.name, labels, float(sample.value)))
        return found

    @property
    def duplicates(self) -> list[str]:
        """The series the stored samples name twice (the real gateway's 400)."""
        seen: set[tuple[str, tuple[tuple[str, str], ...]]] = set()
        twice = []
        for name, labels, _value in self.stored:
            key = (name, tuple(sorted(labels.items())))
            if key in seen:
                twice.append(f"{name}{dict(key[1])}")
            seen.add(key)
        return twice


class FakePushgateway(LocalServer):
    def __init__(self, status: int = 200, consistency_check: bool = False) -> None:
        self.status = status
        self.consistency_check = consistency_check
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
                pushed = Push(self.command, self.path, dict(self.headers), body)
                fake.pushes.append(pushed)
                fake.arrived.set()
                fake._open.wait(30)
                status = fake.status
                if fake.consistency_check and self.command != "DELETE" and pushed.duplicates:
                    status = 400  # "pushed metrics are invalid or inconsistent ..."
                try:
                    self.send_response(status)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                except OSError:  # the pusher gave up waiting and hung up
                    pass

            do_PUT = do_POST = do_DELETE = _record

        return Handler
