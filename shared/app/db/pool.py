"""The connection pool: a capped QueuePool that checks connections, closes idle ones and
reports used/free/pending.

SQLAlchemy's QueuePool gives the cap (pool_size=DB_POOL_MAX, no overflow) and the acquire
timeout. On top of it: SELECT 1 on every new connection and on reuse after an idle spell,
closing connections idle past DB_POOL_IDLE_TIMEOUT_S (on checkout everywhere, and by a
reaper thread in long-running processes), opening DB_POOL_MIN ahead, and the gauges.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from sqlalchemy import event, exc
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import ConnectionPoolEntry, PoolProxiedConnection, PoolResetState, QueuePool

from app.observability import logging as applog
from app.observability.metrics import (
    DB_POOL_FREE,
    DB_POOL_PEAK,
    DB_POOL_PENDING,
    DB_POOL_TIMEOUTS,
    DB_POOL_USED,
)

log = applog.get_logger("app.db.pool")


class MeteredPool(QueuePool):
    """QueuePool that counts callers waiting for a connection and the peak in use."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._stats_lock = threading.Lock()
        self.pending = 0
        self.peak = 0

    def _do_get(self) -> ConnectionPoolEntry:
        with self._stats_lock:
            self.pending += 1
        try:
            entry = super()._do_get()
        except exc.TimeoutError:
            DB_POOL_TIMEOUTS.inc()
            raise
        finally:
            with self._stats_lock:
                self.pending -= 1
        with self._stats_lock:
            self.peak = max(self.peak, self.checkedout())
        return entry

    def recreate(self) -> MeteredPool:  # pragma: no cover - used by engine.dispose()
        return MeteredPool(
            self._creator,
            pool_size=self._pool.maxsize,
            max_overflow=self._max_overflow,
            timeout=self._timeout,
            recycle=self._recycle,
            echo=self.echo,
            pre_ping=self._pre_ping,
            use_lifo=self._pool.use_lifo,
            reset_on_return=self._reset_on_return,
            _dispatch=self.dispatch,
            dialect=self._dialect,
        )

    def stats(self) -> dict[str, int]:
        return {
            "used": self.checkedout(),
            "free": self.checkedin(),
            "pending": self.pending,
            "peak": self.peak,
            "max": self.size(),
        }


def install_checks(engine: Engine, idle_timeout_s: float, ping_after_idle_s: float) -> None:
    """SELECT 1 on connect and on reuse after idle; retire connections idle too long."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, record: ConnectionPoolEntry) -> None:
        cursor = dbapi_conn.cursor()
        try:
            cursor.execute("SELECT 1")
            cursor.fetchall()
        finally:
            cursor.close()
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkin")
    def _on_checkin(dbapi_conn: Any, record: ConnectionPoolEntry) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _on_checkout(
        dbapi_conn: Any, record: ConnectionPoolEntry, proxy: PoolProxiedConnection
    ) -> None:
        idle_since = record.info.get("idle_since")
        record.info["idle_since"] = None
        if idle_since is None:
            return
        idle = time.monotonic() - idle_since
        if idle > idle_timeout_s:
            # Too old to trust (an SCF instance may have been frozen for minutes, and the
            # server may have dropped it): have the pool open a fresh, checked one.
            raise exc.DisconnectionError("idle past DB_POOL_IDLE_TIMEOUT_S")
        if idle > ping_after_idle_s:
            cursor = dbapi_conn.cursor()
            try:
                cursor.execute("SELECT 1")
                cursor.fetchall()
            except Exception as error:
                raise exc.DisconnectionError("SELECT 1 failed on reuse") from error
            finally:
                cursor.close()


# The per-connection flag of install_lazy_reset: True while a transaction may be open.
TXN_OPEN = "txn_open"


def install_lazy_reset(engine: Engine) -> None:
    """Roll back on check-in only when a transaction may still be open.

    The pool's default reset sends ROLLBACK after every use, even after a COMMIT: one more
    round trip per transaction, the most expensive part of a short one. The engine is built
    with `pool_reset_on_return=None` and this tracks, per connection, whether SQLAlchemy
    began a transaction it has not ended; anything unknown (raw DBAPI use) is rolled back.
    """

    def _opened(conn: Connection) -> None:
        conn.connection.info[TXN_OPEN] = True

    def _closed(conn: Connection) -> None:
        if not conn.invalidated:  # an invalidated connection is discarded, never reset
            conn.connection.info[TXN_OPEN] = False

    event.listen(engine, "begin", _opened)
    event.listen(engine, "commit", _closed)
    event.listen(engine, "rollback", _closed)

    @event.listens_for(engine, "reset")
    def _reset(dbapi_conn: Any, record: ConnectionPoolEntry, state: PoolResetState) -> None:
        if state.terminate_only or record is None:
            return
        if record.info.pop(TXN_OPEN, True):
            dbapi_conn.rollback()


def warm(engine: Engine, count: int) -> None:
    """Open `count` connections ahead, so the first requests do not pay for them."""
    held = []
    try:
        for _ in range(count):
            held.append(engine.raw_connection())
    finally:
        for conn in held:
            conn.close()


def reap_idle(pool: MeteredPool, keep: int, idle_timeout_s: float) -> int:
    """Close connections idle past the timeout, keeping at least `keep` open. Returns the count."""
    closed = 0
    now = time.monotonic()
    queue: Any = pool._pool  # sqlalchemy.util.queue.Queue of idle connections
    with queue.mutex:
        entries = list(queue.queue)
    for entry in entries:
        if pool.checkedin() <= keep:
            break
        idle_since = entry.info.get("idle_since") if entry.dbapi_connection is not None else None
        if idle_since is None or now - idle_since <= idle_timeout_s:
            continue
        with queue.mutex:
            try:
                queue.queue.remove(entry)
            except ValueError:
                continue  # checked out meanwhile
        pool._dec_overflow()
        entry.close()
        closed += 1
    return closed


def publish_stats(pool: MeteredPool) -> dict[str, int]:
    stats = pool.stats()
    DB_POOL_USED.set(stats["used"])
    DB_POOL_FREE.set(stats["free"])
    DB_POOL_PENDING.set(stats["pending"])
    DB_POOL_PEAK.set(stats["peak"])
    return stats


class PoolMonitor(threading.Thread):
    """Long-running processes only: every `interval` seconds, reap idle connections and log
    and export used/free/pending. SCF event instances never start it."""

    def __init__(
        self, pool: MeteredPool, keep: int, idle_timeout_s: float, interval: float = 30.0
    ) -> None:
        super().__init__(name="db-pool-monitor", daemon=True)
        self.pool, self.keep, self.idle_timeout_s, self.interval = (
            pool,
            keep,
            idle_timeout_s,
            interval,
        )
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(self.interval):
            self.tick()

    def tick(self) -> dict[str, int]:
        closed = reap_idle(self.pool, self.keep, self.idle_timeout_s)
        stats = publish_stats(self.pool)
        applog.log_fields(log, 20, "db pool", **stats, closed_idle=closed)
        return stats

    def stop(self) -> None:
        self._stop_event.set()
