"""The connection pool: SQLAlchemy's QueuePool (the cap, no overflow, the acquire timeout),
with connections checked, idle ones retired, and used/free/pending reported.

On top of the QueuePool, through its public API and its events only: SELECT 1 on every new
connection and on reuse after an idle spell; a connection idle past DB_POOL_IDLE_TIMEOUT_S
is replaced on checkout everywhere, and closed by a reaper thread in long-running processes
(`PoolMonitor`); once a connection is found lost on the driver's path (`app.db.prepared`),
every connection opened before that is replaced on checkout, as Core does after a lost
connection of its own; DB_POOL_MIN connections opened ahead (`warm`); the gauges.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event, exc
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import (
    ConnectionPoolEntry,
    PoolProxiedConnection,
    PoolResetState,
    QueuePool,
)

from app.observability import logging as applog
from app.observability.metrics import (
    DB_POOL_FREE,
    DB_POOL_PEAK,
    DB_POOL_PENDING,
    DB_POOL_TIMEOUTS,
    DB_POOL_USED,
)

__all__ = ["DB_POOL_TIMEOUTS", "TXN_OPEN", "PoolMonitor", "PoolUse", "stats", "warm"]

log = applog.get_logger("app.db.pool")

# The per-connection flag of install_lazy_reset: True while a transaction may be open.
TXN_OPEN = "txn_open"
# When the connection last went back to the pool (time.monotonic()); None while in use.
IDLE_SINCE = "idle_since"
# When the driver connection was opened (time.monotonic()).
OPENED_AT = "opened_at"


class PoolUse:
    """What the pool's own counters do not tell: callers waiting for a connection, the most
    ever checked out at once, and how many driver connections are open. One per engine."""

    _by_engine: weakref.WeakKeyDictionary[Engine, PoolUse] = weakref.WeakKeyDictionary()
    _registry_lock = threading.Lock()

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.pending = 0
        self.peak = 0
        self.open = 0
        # When a connection was last found lost on the driver's path (time.monotonic()).
        self.lost_at: float | None = None

    @classmethod
    def of(cls, engine: Engine) -> PoolUse:
        found = cls._by_engine.get(engine)
        if found is None:
            with cls._registry_lock:
                found = cls._by_engine.setdefault(engine, PoolUse())
        return found

    @contextmanager
    def waiting(self) -> Iterator[None]:
        with self._lock:
            self.pending += 1
        try:
            yield
        finally:
            with self._lock:
                self.pending -= 1

    def saw_checkout(self, in_use: int) -> None:
        with self._lock:
            self.peak = max(self.peak, in_use)

    def opened(self, count: int) -> None:
        with self._lock:
            self.open += count

    def saw_lost(self) -> None:
        """A connection was found lost mid-use: the server may have restarted, and every
        connection opened before now with it. Core's own disconnect handling invalidates
        the pool likewise; this is the same for `app.db.prepared`'s driver path."""
        with self._lock:
            self.lost_at = time.monotonic()


def _queue_pool(engine: Engine) -> QueuePool:
    pool = engine.pool
    if not isinstance(pool, QueuePool):  # pragma: no cover - build_engine always makes one
        raise TypeError(f"expected a QueuePool, got {type(pool).__name__}")
    return pool


def stats(engine: Engine) -> dict[str, int]:
    """used, free (open and idle), pending, peak and max of the engine's pool."""
    pool, use = _queue_pool(engine), PoolUse.of(engine)
    used = pool.checkedout()
    return {
        "used": used,
        "free": max(use.open - used, 0),
        "pending": use.pending,
        "peak": use.peak,
        "max": pool.size(),
    }


def publish_stats(engine: Engine) -> dict[str, int]:
    found = stats(engine)
    DB_POOL_USED.set(found["used"])
    DB_POOL_FREE.set(found["free"])
    DB_POOL_PENDING.set(found["pending"])
    DB_POOL_PEAK.set(found["peak"])
    return found


# -- checks -----------------------------------------------------------------------------

_reaping = threading.local()  # set while the reaper holds connections to look at them


def _select_1(dbapi_conn: Any) -> None:
    cursor = dbapi_conn.cursor()
    try:
        cursor.execute("SELECT 1")
        cursor.fetchall()
    finally:
        cursor.close()


def install_checks(engine: Engine, idle_timeout_s: float, ping_after_idle_s: float) -> None:
    """SELECT 1 on connect and on reuse after idle; retire connections idle too long; count
    open connections and the peak in use."""
    use = PoolUse.of(engine)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, record: ConnectionPoolEntry) -> None:
        _select_1(dbapi_conn)
        record.info[IDLE_SINCE] = record.info[OPENED_AT] = time.monotonic()
        use.opened(1)

    @event.listens_for(engine, "close")
    def _on_close(dbapi_conn: Any, record: ConnectionPoolEntry) -> None:
        use.opened(-1)

    @event.listens_for(engine, "checkin")
    def _on_checkin(dbapi_conn: Any, record: ConnectionPoolEntry) -> None:
        if not getattr(_reaping, "active", False):
            record.info[IDLE_SINCE] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _on_checkout(
        dbapi_conn: Any, record: ConnectionPoolEntry, proxy: PoolProxiedConnection
    ) -> None:
        if getattr(_reaping, "active", False):
            return  # the reaper looks at the idle time itself and gives it back untouched
        use.saw_checkout(_queue_pool(engine).checkedout())
        idle_since = record.info.get(IDLE_SINCE)
        record.info[IDLE_SINCE] = None
        lost_at = use.lost_at
        if lost_at is not None and record.info.get(OPENED_AT, lost_at) < lost_at:
            # Opened before another connection was found lost (a restart takes them all),
            # and maybe used too recently to be checked: open a fresh one instead.
            raise exc.DisconnectionError("opened before a connection was found lost")
        if idle_since is None:
            return
        idle = time.monotonic() - idle_since
        if idle > idle_timeout_s:
            # Too old to trust (an SCF instance may have been frozen for minutes, and the
            # server may have dropped it): have the pool open a fresh, checked one.
            raise exc.DisconnectionError("idle past DB_POOL_IDLE_TIMEOUT_S")
        if idle > ping_after_idle_s:
            try:
                _select_1(dbapi_conn)
            except Exception as error:
                raise exc.DisconnectionError("SELECT 1 failed on reuse") from error


def install_lazy_reset(engine: Engine) -> None:
    """Roll back on check-in only when a transaction may still be open.

    The pool's default reset sends ROLLBACK after every use, even after a COMMIT: one more
    round trip per transaction, the most expensive part of a short one. The engine is built
    with `pool_reset_on_return=None` and this tracks, per connection, whether a transaction
    was begun and not ended (Core's events here, `app.db.transaction` for the driver path);
    anything unknown (raw DBAPI use) is rolled back.
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


# -- warming and reaping ----------------------------------------------------------------


def warm(engine: Engine, count: int) -> None:
    """Open `count` connections ahead, so the first requests do not pay for them."""
    held = []
    try:
        for _ in range(count):
            held.append(engine.raw_connection())
    finally:
        for conn in held:
            conn.close()


def reap_idle(engine: Engine, keep: int, idle_timeout_s: float) -> int:
    """Close connections idle past the timeout, keeping at least `keep` idle ones open;
    returns how many were closed. The idle connections are checked out for a moment (the
    pool has no other public way to reach them) and either closed or given back with their
    idle time unchanged."""
    pool, use = _queue_pool(engine), PoolUse.of(engine)
    held: list[PoolProxiedConnection] = []
    closed = 0
    _reaping.active = True
    try:
        # Only while some are idle: an empty pool would open a new one, a full one wait.
        while len(held) < use.open and pool.checkedin() > 0:
            try:
                held.append(pool.connect())
            except exc.TimeoutError:
                # A request took the last idle one after the look: none is left to reap.
                break
        now = time.monotonic()
        idle = len(held)
        held.reverse()  # looked at in the order taken
        while held:
            conn = held.pop()
            idle_since = conn.info.get(IDLE_SINCE)
            stale = idle_since is not None and now - idle_since > idle_timeout_s
            if stale and idle > keep:
                idle -= 1
                conn.invalidate()  # closes the driver connection and gives the slot back
                closed += 1
            else:
                conn.close()
    finally:
        for conn in held:  # given back whatever stopped the reaping
            conn.close()
        _reaping.active = False
    return closed


class PoolMonitor(threading.Thread):
    """Long-running processes only: every `interval` seconds, reap idle connections and log
    and export used/free/pending. SCF event instances never start it."""

    def __init__(
        self, engine: Engine, keep: int, idle_timeout_s: float, interval: float = 30.0
    ) -> None:
        super().__init__(name="db-pool-monitor", daemon=True)
        self.engine = engine
        self.keep = keep
        self.idle_timeout_s = idle_timeout_s
        self.interval = interval
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(self.interval):
            try:
                self.tick()
            except Exception as error:  # noqa: BLE001 - one failed round must not end the monitor
                applog.log_fields(
                    log, logging.ERROR, "db pool monitor failed", error=type(error).__name__
                )

    def tick(self) -> dict[str, int]:
        closed = reap_idle(self.engine, self.keep, self.idle_timeout_s)
        found = publish_stats(self.engine)
        applog.log_fields(log, logging.INFO, "db pool", **found, closed_idle=closed)
        return found

    def stop(self) -> None:
        self._stop_event.set()
