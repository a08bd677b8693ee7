"""Addresses for dead dependencies: a port on 127.0.0.1 that nothing listens on, and one
that takes connections and never says a word."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager


def closed_port() -> int:
    """A port that was free a moment ago and is closed now (connections are refused)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@contextmanager
def silent_port() -> Iterator[int]:
    """A port whose connections are made (the kernel's backlog completes them) and then
    never answered: a server hung, or a network path dropping everything after the
    handshake. Closed, and its connections reset, on the way out."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        yield sock.getsockname()[1]
