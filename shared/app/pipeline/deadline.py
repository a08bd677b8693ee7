"""A total deadline on an HTTP call made with `requests`.

The `timeout` of `requests` bounds each socket operation, not the call: an upstream that
trickles its answer a few bytes at a time keeps a call going for as long as it likes, past
the lease of the host slot the call holds. A session from `session()` records the
connection each call uses; a call made inside `within(seconds)` has that connection shut
down when the time is up, which ends the read in progress (or the next one) with an error,
and `Watch.expired` tells the caller that this was why.

Imported by the call path only (it imports requests and urllib3).
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

# After the deadline, how often connections not yet connected when it passed are looked at
# again (a connect in progress ends within the connect timeout).
_RECHECK_S = 0.01

_local = threading.local()


class Watch:
    """The connections of one call, shut down once `seconds` have passed."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.expired = False
        self._done = threading.Event()
        self._lock = threading.Lock()
        self._connections: list[HTTPConnection] = []
        self._thread = threading.Thread(target=self._run, name="http-deadline", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._done.set()

    def attach(self, connection: HTTPConnection) -> None:
        with self._lock:
            self._connections.append(connection)

    def _run(self) -> None:
        if self._done.wait(self.seconds):
            return
        with self._lock:
            self.expired = True
        # Until the call gives up: a connection whose socket was still being opened at the
        # deadline is shut down as soon as it has one.
        while True:
            with self._lock:
                connections = list(self._connections)
            for connection in connections:
                _shut(connection)
            if self._done.wait(_RECHECK_S):
                return


def _shut(connection: HTTPConnection) -> None:
    sock = connection.sock
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


def _attach(connection: HTTPConnection) -> None:
    watch: Watch | None = getattr(_local, "watch", None)
    if watch is not None:
        watch.attach(connection)


class _Connection(HTTPConnection):
    def request(self, *args: Any, **kwargs: Any) -> None:
        _attach(self)
        super().request(*args, **kwargs)


class _HttpsConnection(HTTPSConnection):
    def request(self, *args: Any, **kwargs: Any) -> None:
        _attach(self)
        super().request(*args, **kwargs)


class _Pool(HTTPConnectionPool):
    ConnectionCls = _Connection


class _HttpsPool(HTTPSConnectionPool):
    ConnectionCls = _HttpsConnection


def session() -> requests.Session:
    """A session whose calls `within` can bound."""
    http = requests.Session()
    for prefix in ("http://", "https://"):
        adapter = HTTPAdapter()
        adapter.poolmanager.pool_classes_by_scheme = {"http": _Pool, "https": _HttpsPool}
        http.mount(prefix, adapter)
    return http
