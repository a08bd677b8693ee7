"""One engine per instance and the one transaction helper.

MySQL/MariaDB through PyMySQL in every deployed environment; SQLite for the embedded
default. SQLite under a threaded server needs WAL, a busy timeout and `BEGIN IMMEDIATE`
(the pysqlite recipe in SQLAlchemy's docs): writers then queue instead of failing, which
is also why `with_for_update()` compiling to nothing there is safe.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import create_engine, event, exc
from sqlalchemy.engine import Connection, Engine, make_url

from app.config import get_settings
from app.db.pool import MeteredPool, install_checks, install_lazy_reset
from app.errors import AppError, ErrorCode
from app.observability import logging as applog

log = applog.get_logger("app.db")
T = TypeVar("T")


def _sqlite_engine(url: str, pool_max: int, acquire_timeout: float) -> Engine:
    parsed = make_url(url)
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        url,
        poolclass=MeteredPool,
        pool_size=pool_max,
        max_overflow=0,
        pool_timeout=acquire_timeout,
        connect_args={"check_same_thread": False, "timeout": 30},
        hide_parameters=True,
    )

    @event.listens_for(engine, "connect")
    def _sqlite_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # let SQLAlchemy's BEGIN below be the only one
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _sqlite_begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def build_engine(url: str | None = None) -> Engine:
    settings = get_settings()
    url = url or settings.database_url
    if url.startswith("sqlite"):
        engine = _sqlite_engine(url, settings.db_pool_max, settings.db_pool_acquire_timeout_s)
    else:
        engine = create_engine(
            url,
            poolclass=MeteredPool,
            pool_size=settings.db_pool_max,
            max_overflow=0,
            pool_timeout=settings.db_pool_acquire_timeout_s,
            pool_use_lifo=True,  # keep the warm connections busy so idle ones can retire
            pool_reset_on_return=None,  # see pool.install_lazy_reset
            connect_args={"connect_timeout": 5, "charset": "utf8mb4"},
            isolation_level="READ COMMITTED",
            # Statement errors are logged; their parameters may hold hashes or tokens.
            hide_parameters=True,
        )
    install_checks(engine, settings.db_pool_idle_timeout_s, settings.db_pool_ping_after_idle_s)
    if not url.startswith("sqlite"):
        install_lazy_reset(engine)
    return engine


@functools.lru_cache(maxsize=1)
def get_engine() -> Engine:
    return build_engine()


def _describe(engine: Engine) -> dict[str, Any]:
    url = engine.url
    return {"host": url.host, "port": url.port, "database": url.database}


@contextmanager
def transaction() -> Iterator[Connection]:
    """A connection inside one transaction: committed on success, rolled back on error.

    An exhausted pool, an unreachable database or a connection lost mid-transaction is
    `503 SERVICE_UNAVAILABLE`, not a hang and not a 500; the log names host and database,
    never the password.
    """
    engine = get_engine()
    conn = checked_out(engine, engine.connect)
    with conn, unavailable_if_lost(engine), conn.begin():
        yield conn


def checked_out(engine: Engine, checkout: Callable[[], T]) -> T:
    """`checkout()` (a connection from the pool), with an exhausted pool or an unreachable
    database answered as 503."""
    try:
        return checkout()
    except exc.TimeoutError as error:
        applog.log_fields(log, 30, "db pool exhausted", **_describe(engine))
        raise AppError(ErrorCode.SERVICE_UNAVAILABLE) from error
    except exc.DBAPIError as error:
        applog.log_fields(
            log, 40, "db connection failed", **_describe(engine), error=str(error.orig)
        )
        raise AppError(ErrorCode.SERVICE_UNAVAILABLE) from error


@contextmanager
def unavailable_if_lost(engine: Engine) -> Iterator[None]:
    """A connection lost inside the block (its DBAPIError says it was invalidated) is 503."""
    try:
        yield
    except exc.DBAPIError as error:
        if not error.connection_invalidated:
            raise
        # The server went away mid-transaction (restart, failover, wait_timeout): the pool
        # has dropped the connection, and nothing was committed. A dependency failure, not
        # a bug of ours.
        applog.log_fields(log, 40, "db connection lost", **_describe(engine), error=str(error.orig))
        raise AppError(ErrorCode.SERVICE_UNAVAILABLE) from error
