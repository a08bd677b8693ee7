"""One engine per instance: MySQL/MariaDB through PyMySQL in every deployed environment,
SQLite for the embedded default. Transactions are `app.db.transaction`'s.

SQLite under a threaded server needs WAL, a busy timeout and `BEGIN IMMEDIATE` (the pysqlite
recipe in SQLAlchemy's docs): writers then queue instead of failing, which is also why
`with_for_update()` compiling to nothing there is safe.

On MySQL a statement whose answer does not come within `answer_timeout_s` (its longest lock
wait, DB_LOCK_WAIT_TIMEOUT_S, and then STATEMENT_WORK_S) counts as a lost connection
(PyMySQL's error 2013): a server that went silent (a failover that moved its address without
a reset, a dropped network path) is then a 503, or a `CommitInDoubt` at COMMIT
(app.db.transaction), instead of a wait the platform's time limit ends with no word.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.pool import QueuePool

from app.config import get_settings
from app.db.pool import install_checks, install_lazy_reset
from app.errors import AppError, ErrorCode
from app.observability import logging as applog

log = applog.get_logger("app.db")

# A statement's own work once it holds its locks: ours touch indexed rows or bounded batches
# (1000 rows at most) and take milliseconds, so 5 s is only ever reached by a server that has
# stopped answering; with the 3 s lock wait, 8 s ends inside an HTTP function's 10 s when the
# statement starts early in it (a silent server met by an idle connection's ping, then by its
# reconnect, can still outlast the invocation: the platform's limit ends that).
STATEMENT_WORK_S = 5


def answer_timeout_s(lock_wait_s: int) -> int:
    """How long a statement waits for the server's answer (and a write for the server to take
    it) before its connection counts as lost: longer than any lock wait, so a wait the full
    DB_LOCK_WAIT_TIMEOUT_S still ends as the server's lock conflict (1205), never cut."""
    return lock_wait_s + STATEMENT_WORK_S


def _sqlite_engine(url: str, pool_max: int, acquire_timeout: float) -> Engine:
    parsed = make_url(url)
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        url,
        poolclass=QueuePool,
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


def build_engine(url: str | None = None, *, long_statements: bool = False) -> Engine:
    """The engine for `url` (DATABASE_URL by default). A URL that does not parse is 503
    SERVICE_UNAVAILABLE, as a database that cannot be reached: its error may quote it (past
    an unescaped `@` in the password, a `:` leaves the tail in the port, and int() quotes
    that), so it is named by class alone. `long_statements` waits for every answer as long
    as it takes: a migration's (app.db.migrate), whose ALTER may run minutes and whose lock
    waits for another run's; only the function's time limit ends it."""
    settings = get_settings()
    url = url or settings.database_url
    try:
        make_url(url)
    except (ArgumentError, ValueError) as error:
        applog.log_fields(log, logging.ERROR, "db connection failed", error=type(error).__name__)
        raise AppError(ErrorCode.SERVICE_UNAVAILABLE) from None
    if url.startswith("sqlite"):
        engine = _sqlite_engine(url, settings.db_pool_max, settings.db_pool_acquire_timeout_s)
    else:
        lock_wait_s = settings.db_lock_wait_timeout_s
        answer_s = None if long_statements else answer_timeout_s(lock_wait_s)
        engine = create_engine(
            url,
            poolclass=QueuePool,
            pool_size=settings.db_pool_max,
            max_overflow=0,
            pool_timeout=settings.db_pool_acquire_timeout_s,
            pool_use_lifo=True,  # keep the warm connections busy so idle ones can retire
            pool_reset_on_return=None,  # see pool.install_lazy_reset
            connect_args={
                "connect_timeout": 5,
                "read_timeout": answer_s,
                "write_timeout": answer_s,
                "charset": "utf8mb4",
                # Every session, so a wait on a row lock, or on a table's metadata lock
                # behind a migration's ALTER, ends inside the invocation (error 1205 both).
                "init_command": (
                    f"SET SESSION innodb_lock_wait_timeout = {lock_wait_s},"
                    f" lock_wait_timeout = {lock_wait_s}"
                ),
            },
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
