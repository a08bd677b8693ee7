"""Host slots in a race test: waiting for a condition, and another instance's call that
takes a host's only slot and holds it in flight."""

from __future__ import annotations

import http.client
import threading
import time
from collections.abc import Callable
from typing import Any

from app.runner import slots
from tests.fakes.upstream import Answer, Call, FakeUpstream


def wait_for(condition: Callable[[], Any], timeout: float = 20.0, every: float = 0.01) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline
        time.sleep(every)


class OtherCaller:
    """Another instance's call to the same host: it takes the host's only slot (free once
    the stalled holder's lease ran out) and holds a call in flight until `end`."""

    def __init__(self, upstream: FakeUpstream) -> None:
        self.host = f"127.0.0.1:{upstream.port}"
        self.port = upstream.port
        self.hold = threading.Event()
        upstream.script("/other", self._answer)
        self.token: str | None = None
        self._thread = threading.Thread(target=self._call)

    def _answer(self, _call: Call) -> Answer:
        return Answer(200, {}) if self.hold.wait(30) else Answer(500)

    def _call(self) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            connection.request("POST", "/other", body=b"{}")
            connection.getresponse().read()
        finally:
            connection.close()

    def start(self) -> None:
        self.token = slots.acquire(self.host, cap=1, lease_s=60)
        assert self.token is not None, "the stalled holder's slot was not free"
        self._thread.start()

    def end(self) -> None:
        self.hold.set()
        self._thread.join()
        assert self.token is not None
        slots.release(self.host, self.token)
