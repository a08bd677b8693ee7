"""The commands a piece of code sends to Redis, as the server saw them (MONITOR)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

STOP = "GET stop-monitor"


@contextmanager
def commands_sent(redis: Any) -> Iterator[list[str]]:
    """The commands sent to `redis`'s database while the block runs, in order, by any client.
    Left out: redis-py's health-check PING of a connection idle past its interval (a slow
    run) and the SELECT of a new connection, which are not the code's own."""
    db = redis.connection_pool.connection_kwargs.get("db", 0)
    seen: list[str] = []
    watching = threading.Event()

    def monitor() -> None:
        with redis.monitor() as stream:
            watching.set()
            for command in stream.listen():
                if command["command"] == STOP:
                    return
                if command["command"] == "PING" or command["command"].startswith("SELECT"):
                    continue
                if int(command["db"]) == db:
                    seen.append(command["command"])

    watcher = threading.Thread(target=monitor, daemon=True)
    watcher.start()
    assert watching.wait(5)
    try:
        yield seen
    finally:
        redis.get("stop-monitor")
        watcher.join(5)
