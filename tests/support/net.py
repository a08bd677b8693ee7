"""Addresses for dead dependencies: a port on 127.0.0.1 that nothing listens on, one that
takes connections and never says a word, and one that forwards to a live server until the
client says a given thing, and then hears nothing more."""

from __future__ import annotations

import contextlib
import socket
import threading
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


class Muting:
    """A port (`port`) forwarding to a live server, until `arm()` has been called and a
    client then sends the trigger (see `muted_after`)."""

    def __init__(self, server: tuple[str, int], trigger: bytes) -> None:
        self.server, self.trigger = server, trigger
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.1)
        self.port: int = self.listener.getsockname()[1]
        self.armed, self.stopped = threading.Event(), threading.Event()
        self.sockets: list[socket.socket] = []
        self.threads = [threading.Thread(target=self._accept, daemon=True)]
        self.threads[0].start()

    def _accept(self) -> None:
        while not self.stopped.is_set():
            try:
                client, _ = self.listener.accept()
            except TimeoutError:
                continue
            client.settimeout(None)
            upstream = socket.create_connection(self.server)
            self.sockets += [client, upstream]
            muted = threading.Event()
            for pump in (
                threading.Thread(target=self._ask, args=(client, upstream, muted), daemon=True),
                threading.Thread(target=self._answer, args=(upstream, client, muted), daemon=True),
            ):
                self.threads.append(pump)
                pump.start()

    def _ask(self, client: socket.socket, upstream: socket.socket, muted: threading.Event) -> None:
        seen = b""
        while data := _received(client):
            seen = seen[-len(self.trigger) :] + data  # a trigger split across two reads
            if self.trigger in seen and self.armed.is_set():
                self.armed.clear()
                muted.set()  # before the server has it: its answer is never passed on
            if not _sent(upstream, data):
                return

    def _answer(
        self, upstream: socket.socket, client: socket.socket, muted: threading.Event
    ) -> None:
        while data := _received(upstream):
            if not muted.is_set() and not _sent(client, data):
                return

    def arm(self) -> None:
        """The next trigger a client sends mutes its connection (that one only)."""
        self.armed.set()

    def close(self) -> None:
        self.stopped.set()
        self.threads[0].join(5)  # no longer accepting
        self.listener.close()
        for sock in self.sockets:
            with contextlib.suppress(OSError):  # the client closed it already
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        for thread in self.threads[1:]:
            thread.join(5)


def _received(sock: socket.socket) -> bytes:
    try:
        return sock.recv(65536)
    except OSError:  # closed from the other side, or by close()
        return b""


def _sent(sock: socket.socket, data: bytes) -> bool:
    try:
        sock.sendall(data)
    except OSError:  # the other side is gone
        return False
    return True


@contextmanager
def muted_after(server: tuple[str, int], trigger: bytes) -> Iterator[Muting]:
    """A port whose connections are forwarded to `server` both ways; once armed, the first
    to send `trigger` still has it reach the server, which acts on it, and from then on
    nothing the server says comes back to it, the connection neither closed nor reset: a
    server that went silent (a failover that moved its address, a dropped network path) at
    that very point. Armed by the test when its client is past what it says on connecting
    (a driver may send the trigger there too)."""
    proxy = Muting(server, trigger)
    try:
        yield proxy
    finally:
        proxy.close()
