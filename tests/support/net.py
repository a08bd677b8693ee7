"""Addresses for dead dependencies: a port on 127.0.0.1 that nothing listens on."""

from __future__ import annotations

import socket


def closed_port() -> int:
    """A port that was free a moment ago and is closed now (connections are refused)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port
