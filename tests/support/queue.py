"""A queue backend for tests that keeps what the port is sent: `queue`, the fixture that puts
one in place of the configured backend for a test."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import app.queue as port


class Recorder:
    """A queue backend that keeps what it is sent, and refuses the branches in `refuse`."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.refuse: set[int] = set()

    def publish(self, queue: str, message: dict[str, Any], *, delay_s: float = 0) -> str:
        if message.get("branch") in self.refuse:
            raise ConnectionError("the queue went away")
        self.sent.append(message)
        return str(len(self.sent))

    def release_due(self, topics: list[str] | None = None) -> int:
        return 0


@pytest.fixture
def queue() -> Iterator[Recorder]:
    recorder, saved = Recorder(), port._backend
    port._backend = recorder
    try:
        yield recorder
    finally:
        port._backend = saved
