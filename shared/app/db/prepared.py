"""Core statements for the hottest paths, compiled once per dialect and run on the driver.

`Connection.execute` costs tens of microseconds of CPU per statement on top of the round
trip (compiled-cache lookup, parameter processing, result wrapping), as much as the round
trip itself on a short statement, and under a hot row lock that CPU is also time the lock
is held. The quota saga runs nine statements per task, so they go through this instead:
the statement is still written once, in Core, against the table definitions; it is
compiled for the connection's dialect on first use; each call binds values through the
column types' own bind processors (so `UtcDateTime` still refuses a naive datetime) and runs
on the DBAPI cursor of the caller's connection, inside the caller's transaction.

`driver_transaction()` is the transaction for a unit of work made only of prepared
statements: a pooled driver connection, committed on success and rolled back on error, with
`app.db.transaction()`'s 503s, without the Core Connection around it (on MySQL; SQLite, whose
`BEGIN IMMEDIATE` comes from the Core begin event, gets a Core transaction). A Core
`Connection` is a `Unit` too, so the same code runs inside a caller's Core transaction.

Errors keep SQLAlchemy's shape: a driver error becomes the `sqlalchemy.exc.DBAPIError`
subclass `Connection.execute` would raise (`IntegrityError`, `OperationalError`, ...), with
parameters hidden, and a lost connection is invalidated so that `app.db.transaction()`
answers 503 and the pool never hands it out again.

Use it only where a benchmark shows the difference; everything else uses `conn.execute`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

from sqlalchemy import exc
from sqlalchemy.engine import Dialect, Engine
from sqlalchemy.pool import PoolProxiedConnection
from sqlalchemy.sql.expression import Executable

from app.db.engine import checked_out, get_engine, transaction, unavailable_if_lost
from app.db.pool import TXN_OPEN


class Unit(Protocol):
    """What prepared statements run on: a Core `Connection` or a `DriverTransaction`."""

    @property
    def engine(self) -> Engine: ...
    @property
    def dialect(self) -> Dialect: ...
    @property
    def connection(self) -> PoolProxiedConnection: ...
    @property
    def dispatch(self) -> Any: ...  # the engine's events
    @property
    def info(self) -> dict[Any, Any]: ...  # follows the driver connection through the pool
    def invalidate(self, exception: BaseException | None = None) -> None: ...


class DriverTransaction:
    """A pooled driver connection inside one transaction (see `driver_transaction`)."""

    __slots__ = ("connection", "dialect", "dispatch", "engine", "info", "invalidated")

    def __init__(self, engine: Engine, connection: PoolProxiedConnection) -> None:
        self.engine = engine
        self.dialect = engine.dialect
        self.dispatch = engine.dispatch
        self.connection = connection
        self.info = connection.info
        self.invalidated = False

    def invalidate(self, exception: BaseException | None = None) -> None:
        # The pool discards it and checks the proxy in: it must not be closed again.
        self.invalidated = True
        self.connection.invalidate(exception)


@contextmanager
def driver_transaction() -> Iterator[Unit]:
    engine = get_engine()
    if engine.dialect.name == "sqlite":
        with transaction() as conn:
            yield conn
        return
    unit = DriverTransaction(engine, checked_out(engine, engine.raw_connection))
    # Until the commit, the pool's lazy reset rolls this connection back at check-in: that
    # is the rollback on error (and a connection that fails it is discarded by the pool).
    unit.info[TXN_OPEN] = True
    try:
        with unavailable_if_lost(engine):
            yield unit
            _commit(unit)
        unit.info[TXN_OPEN] = False
    finally:
        if not unit.invalidated:
            unit.connection.close()


def _commit(unit: DriverTransaction) -> None:
    dbapi_conn = unit.connection.dbapi_connection
    try:
        unit.connection.commit()
    except unit.dialect.loaded_dbapi.Error as error:
        raise _wrapped(unit, unit.dialect, "COMMIT", None, error, dbapi_conn, None) from error


@dataclass(frozen=True)
class _Compiled:
    sql: str
    # (name, bind processor) per parameter, in order for a positional paramstyle
    binds: tuple[tuple[str, Callable[[Any], Any] | None], ...]
    positional: bool  # qmark/format (SQLite) or pyformat (PyMySQL)
    literals: dict[str, Any]  # values bound in the statement itself (`phase == 'reserved'`)


class Outcome(NamedTuple):
    """What a statement returned: the rows (for a SELECT) and the affected row count."""

    rows: Sequence[tuple[Any, ...]]
    rowcount: int

    def first(self) -> tuple[Any, ...] | None:
        return self.rows[0] if self.rows else None


class Prepared:
    """One Core statement; `run(conn, params)` executes it on `conn`'s DBAPI cursor."""

    def __init__(self, statement: Executable) -> None:
        self._statement = statement
        # Per driver and paramstyle: SQLite's qmark and PyMySQL's pyformat in the same process.
        self._compiled: dict[tuple[type[Dialect], str], _Compiled] = {}
        self._lock = threading.Lock()

    def run(self, conn: Unit, params: Mapping[str, Any]) -> Outcome:
        dialect = conn.dialect
        compiled = self._compiled.get((type(dialect), dialect.paramstyle)) or self._compile(dialect)
        if compiled.literals:
            params = {**compiled.literals, **params}
        values: Any
        if compiled.positional:
            values = [params[n] if p is None else p(params[n]) for n, p in compiled.binds]
        else:
            values = {n: params[n] if p is None else p(params[n]) for n, p in compiled.binds}
        dbapi_conn = conn.connection.dbapi_connection
        if dbapi_conn is None:  # pragma: no cover - a closed or invalidated Connection
            raise exc.ResourceClosedError("This connection is closed")
        sql = compiled.sql
        cursor = dbapi_conn.cursor()
        try:
            # The engine's cursor events still fire (tracing instrumentation hooks them), with
            # no execution context; a listener's rewrite of the statement is honoured.
            events = conn.dispatch
            traced = bool(events.before_cursor_execute or events.after_cursor_execute)
            if traced:
                for before in events.before_cursor_execute:
                    sql, values = before(conn, cursor, sql, values, None, False)
            cursor.execute(sql, values)
            if traced:
                for after in events.after_cursor_execute:
                    after(conn, cursor, sql, values, None, False)
            return Outcome(cursor.fetchall() if cursor.description else (), cursor.rowcount)
        except dialect.loaded_dbapi.Error as error:
            raise _wrapped(conn, dialect, sql, values, error, dbapi_conn, cursor) from error
        finally:
            cursor.close()

    def _compile(self, dialect: Dialect) -> _Compiled:
        with self._lock:
            key = (type(dialect), dialect.paramstyle)
            found = self._compiled.get(key)
            if found is not None:
                return found
            compiled: Any = self._statement.compile(dialect=dialect)  # type: ignore[attr-defined]
            if compiled.escaped_bind_names:
                raise TypeError("Prepared statements take plain parameter names")
            names = tuple(compiled.positiontup if compiled.positional else compiled.binds)
            if any(compiled.binds[name].expanding for name in names):
                raise TypeError("IN lists are not supported; use conn.execute")
            binds = tuple(
                (name, compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect))
                for name in names
            )
            literals = {
                name: compiled.binds[name].value
                for name in names
                if not compiled.binds[name].required
            }
            result = _Compiled(compiled.string, binds, compiled.positional, literals)
            self._compiled[key] = result
            return result


def _wrapped(
    conn: Unit,
    dialect: Dialect,
    sql: str,
    values: Any,
    error: Exception,
    dbapi_conn: Any,
    cursor: Any,
) -> BaseException:
    lost = dialect.is_disconnect(error, dbapi_conn, cursor)  # type: ignore[arg-type]
    if lost:
        conn.invalidate(error)
    return exc.DBAPIError.instance(
        sql,
        values,
        error,
        dialect.loaded_dbapi.Error,
        hide_parameters=True,
        connection_invalidated=lost,
        dialect=dialect,
    )
