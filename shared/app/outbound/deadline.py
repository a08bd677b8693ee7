"""A total deadline on an HTTP call made with urllib3 (the transport of `app.outbound.client`).

urllib3's `timeout` bounds each socket operation, not the call: an upstream that trickles
its answer a few bytes at a time keeps a call going for as long as it likes, past the lease
of the host slot the call holds. The connections of a pool manager from `pool_manager()`
record which call uses them; a call made inside `within(seconds)` has its connection shut
down when the time is up, which ends the read in progress (or the next one) with an error,
and `Watch.expired` tells the caller that this was why.

Every socket made in the thread inside `within` is the call's too, whatever library made
it: found through the interpreter's `socket.__new__` audit event (`sys.addaudithook`,
installed once, on import). That bounds a connection the call opens before the connection
holds it (its connect and TLS handshake, which a server can dribble), and an SDK that brings
its own transport (requests, urllib) and takes no connection or session of ours. A
keep-alive connection opened by an earlier call is attached when this call sends on it.

Imported with the client, and by the code that calls an SDK within a deadline (it imports
urllib3).
"""

from __future__ import annotations

import heapq
import itertools
import socket
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

import certifi
from urllib3 import PoolManager
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.util import create_urllib3_context

# After the deadline, how often connections not yet connected when it passed are looked at
# again (a connect in progress ends within the connect timeout).
_RECHECK_S = 0.01

_local = threading.local()


class Watch:
    """The connections of one call, shut down once `seconds` have passed."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.due = time.monotonic() + seconds
        self.expired = False
        self.done = False
        self._lock = threading.Lock()
        self._connections: list[HTTPConnection] = []
        self._sockets: list[socket.socket] = []

    def start(self) -> None:
        _watchdog.add(self)

    def stop(self) -> None:
        # No wake-up: the watchdog drops a stopped watch when it next looks at it. Under the
        # lock: once this returns, an expire() in flight has finished and no later one shuts
        # anything, so the thread's next call on the same keep-alive connection is safe.
        with self._lock:
            self.done = True
            self._sockets.clear()  # their owner (the pool, an SDK) closes them

    def attach(self, connection: HTTPConnection) -> None:
        with self._lock:
            if connection not in self._connections:
                self._connections.append(connection)

    def attach_socket(self, sock: socket.socket) -> None:
        with self._lock:
            if not self.done:
                self._sockets.append(sock)

    def expire(self) -> None:
        """Past the deadline: shut down the connections opened so far (called again each
        _RECHECK_S until the call gives up, for one still connecting at the deadline)."""
        with self._lock:
            if self.done:  # the call ended after the watchdog picked this watch up
                return
            self.expired = True
            for connection in self._connections:
                _shut(connection.sock or getattr(connection, "answer_sock", None))
            for sock in self._sockets:
                _shut(sock)


class _Watchdog:
    """One thread for every watch of the process, asleep until the earliest deadline.

    A thread per call would cost two thread switches on every call (its start and its
    wake-up at the end), which the calls of a busy worker then queue behind. Here a call
    that ends in time wakes nobody: its watch is dropped when its deadline comes round.
    Deadlines mostly arrive in order (similar timeouts), so adding a watch rarely wakes
    the thread either."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._heap: list[tuple[float, int, Watch]] = []
        self._seq = itertools.count()
        self._thread: threading.Thread | None = None

    def add(self, watch: Watch) -> None:
        with self._lock:
            heap = self._heap
            if len(heap) > 64 and len(heap) % 64 == 0:
                # Stopped watches wait for their deadline in the heap: keep it to the live.
                heap[:] = [entry for entry in heap if not entry[2].done]
                heapq.heapify(heap)
            earliest = heap[0][0] if heap else None
            heapq.heappush(heap, (watch.due, next(self._seq), watch))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="http-deadline", daemon=True)
                self._thread.start()
            elif earliest is None or watch.due < earliest:
                self._changed.notify()

    def _run(self) -> None:
        expiring: list[Watch] = []
        while True:
            with self._lock:
                now = time.monotonic()
                while self._heap and (self._heap[0][2].done or self._heap[0][0] <= now):
                    _, _, watch = heapq.heappop(self._heap)
                    if not watch.done:
                        expiring.append(watch)
                if not expiring:
                    wait = self._heap[0][0] - now if self._heap else None
                    self._changed.wait(wait)
                    continue
            expiring = [watch for watch in expiring if not watch.done]
            for watch in expiring:
                watch.expire()
            if expiring:
                time.sleep(_RECHECK_S)


_watchdog = _Watchdog()


def _shut(sock: socket.socket | None) -> None:
    """A shutdown(2) call: it never blocks. A connection's socket, or the socket its answer
    is read from: an answer that closes the connection (HTTP/1.0, `Connection: close`)
    takes the socket with it, and http.client's connection forgets it while the body is
    still being read."""
    if sock is None:
        return
    # The plain socket's shutdown, also under TLS: it wakes a blocked read in the calling
    # thread without touching the TLS state that thread is using. OSError: already closed.
    with suppress(OSError):
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


@contextmanager
def within(seconds: float) -> Iterator[Watch]:
    """The calls made in this thread inside the block end by `seconds` from its start."""
    watch = Watch(seconds)
    _local.watch = watch
    watch.start()
    try:
        yield watch
    finally:
        watch.stop()
        _local.watch = None


def _on_audit(event: str, args: tuple[Any, ...]) -> None:
    """Every socket made in a thread inside `within` goes to its watch: the plain socket of
    a connection and, under TLS, the SSLSocket that takes its descriptor over. Called for
    every audit event of the process, so it looks at the event's name first, and it never
    raises (that would fail the operation audited)."""
    if event == "socket.__new__":
        watch: Watch | None = getattr(_local, "watch", None)
        if watch is not None:
            watch.attach_socket(args[0])


sys.addaudithook(_on_audit)


def _attach(connection: HTTPConnection) -> None:
    watch: Watch | None = getattr(_local, "watch", None)
    if watch is not None:
        watch.attach(connection)


class _Connection(HTTPConnection):
    answer_sock: Any = None  # the socket the current call's answer is read from

    def request(self, *args: Any, **kwargs: Any) -> None:
        self.answer_sock = None
        _attach(self)
        super().request(*args, **kwargs)

    def getresponse(self) -> Any:
        self.answer_sock = self.sock
        return super().getresponse()


class _HttpsConnection(_Connection, HTTPSConnection):
    pass


class _Pool(HTTPConnectionPool):
    ConnectionCls = _Connection


class _HttpsPool(HTTPSConnectionPool):
    ConnectionCls = _HttpsConnection


def pool_manager() -> PoolManager:
    """Keep-alive connections per host, whose calls `within` can bound. Nothing is retried
    or redirected here: the caller counts attempts, and a redirect could leave the
    allow-list. TLS is verified against certifi's CA bundle; no proxy or .netrc is read
    from the environment (a proxy would hide where the call goes)."""
    context = create_urllib3_context()
    context.load_verify_locations(certifi.where())
    manager = PoolManager(retries=False, ssl_context=context)
    manager.pool_classes_by_scheme = {"http": _Pool, "https": _HttpsPool}
    return manager
