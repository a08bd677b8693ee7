"""A WebSocket client on a plain socket, for what the client library will not do: send
protocol ping frames as fast as the socket takes them while reading nothing, with a
receive buffer as small as the kernel allows."""

from __future__ import annotations

import base64
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from websockets.frames import Opcode


def _send_handshake(sock: socket.socket, host: str, port: int, path: str) -> None:
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n".encode()
    )


def connect_unread(host: str, port: int, path: str) -> socket.socket:
    """A completed handshake at `path` (its query included); the socket's receive buffer
    is set before it connects, so the server's answers back up on its side at once."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    sock.settimeout(10)
    sock.connect((host, port))
    _send_handshake(sock, host, port, path)
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)  # byte by byte: nothing past the handshake is read
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock


def handshake_then_gone(host: str, port: int, path: str) -> None:
    """A handshake at `path` sent, and the socket closed at once, before any answer: the
    server is still judging the handshake when the client has gone."""
    with socket.create_connection((host, port), timeout=10) as sock:
        _send_handshake(sock, host, port, path)


def ping_frame(payload: bytes) -> bytes:
    """A client's ping frame (masked, as every client frame must be), of up to 125 bytes."""
    mask = os.urandom(4)
    masked = bytes(byte ^ mask[i % 4] for i, byte in enumerate(payload))
    return bytes([0x80 | Opcode.PING.value, 0x80 | len(payload)]) + mask + masked


@dataclass
class Flood:
    sent: int  # bytes of ping frames the socket took
    stalled: bool  # a send waited a whole second: the server has stopped reading


def flood_pings(sock: socket.socket, seconds: float, most: int = 64 * 2**20) -> Flood:
    """Send 125-byte pings, reading nothing, until a send stalls, `seconds` pass or `most`
    bytes have gone."""
    frames = ping_frame(os.urandom(125)) * 2000  # 262 KB a round
    sock.settimeout(1)
    sent, deadline = 0, time.monotonic() + seconds
    try:
        while sent < most and time.monotonic() < deadline:
            sent += sock.send(frames[sent % len(frames) :])  # a frame may go in two sends
    except TimeoutError:
        return Flood(sent, stalled=True)
    return Flood(sent, stalled=False)


def rss_bytes(pid: int) -> int:
    """The resident memory of process `pid` (VmRSS, in kB in /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for {pid}")
