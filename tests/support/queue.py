"""Queue backends in tests: `backend_in_place`, a backend put in place of the configured one
for a block, and `queue`, the fixture that puts a `Recorder` there, which keeps what the
port is sent."""

from __future__ import annotations

import contextlib
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


@contextlib.contextmanager
def backend_in_place(backend: Any) -> Iterator[None]:
    """`backend` as the port's backend for the block; the one before it back after."""
    saved = port._backend
    port._backend = backend
    try:
        yield
    finally:
        port._backend = saved


@pytest.fixture
def queue() -> Iterator[Recorder]:
    recorder = Recorder()
    with backend_in_place(recorder):
        yield recorder
