"""Core statements for the hottest paths, compiled once per dialect and run on the driver.

`Connection.execute` costs tens of microseconds of CPU per statement on top of the round
trip (compiled-cache lookup, parameter processing, result wrapping), as much as the round
trip itself on a short statement, and under a hot row lock that CPU is also time the lock
is held. The quota saga runs nine statements per task, so they go through this instead:
the statement is still written once, in Core, against the table definitions; it is
compiled for the connection's dialect on first use; each call binds values through the
column types' own bind processors (so `UtcDateTime` still refuses a naive datetime) and runs
on the DBAPI cursor of the caller's connection, inside the caller's transaction.

Errors keep SQLAlchemy's shape: a driver error becomes the `sqlalchemy.exc.DBAPIError`
subclass `Connection.execute` would raise (`IntegrityError`, `OperationalError`, ...), with
parameters hidden, and a lost connection is invalidated so that `app.db.transaction()`
answers 503 and the pool never hands it out again.

Use it only where a benchmark shows the difference; everything else uses `conn.execute`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import exc
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.sql.expression import Executable


@dataclass(frozen=True)
class _Compiled:
    sql: str
    names: tuple[str, ...]  # parameter names, in order for a positional paramstyle
    positional: bool  # qmark/format (SQLite) or pyformat (PyMySQL)
    processors: tuple[Callable[[Any], Any] | None, ...]
    literals: dict[str, Any]  # values bound in the statement itself (`phase == 'reserved'`)


@dataclass(frozen=True)
class Outcome:
    """What a statement returned: the rows (for a SELECT) and the affected row count."""

    rows: list[tuple[Any, ...]]
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

    def run(self, conn: Connection, params: Mapping[str, Any]) -> Outcome:
        dialect = conn.dialect
        compiled = self._compiled.get((type(dialect), dialect.paramstyle)) or self._compile(dialect)
        if compiled.literals:
            params = {**compiled.literals, **params}
        bound = [
            params[name] if process is None else process(params[name])
            for name, process in zip(compiled.names, compiled.processors, strict=True)
        ]
        values: Any = (
            bound if compiled.positional else dict(zip(compiled.names, bound, strict=True))
        )
        dbapi_conn = conn.connection.dbapi_connection
        if dbapi_conn is None:  # pragma: no cover - a closed or invalidated Connection
            raise exc.ResourceClosedError("This connection is closed")
        sql = compiled.sql
        cursor = dbapi_conn.cursor()
        try:
            # The engine's cursor events still fire (tracing instrumentation hooks them), with
            # no execution context; a listener's rewrite of the statement is honoured.
            traced = bool(conn.dispatch.before_cursor_execute or conn.dispatch.after_cursor_execute)
            if traced:
                for before in conn.dispatch.before_cursor_execute:
                    sql, values = before(conn, cursor, sql, values, None, False)
            cursor.execute(sql, values)
            if traced:
                for after in conn.dispatch.after_cursor_execute:
                    after(conn, cursor, sql, values, None, False)
            rows = list(cursor.fetchall()) if cursor.description else []
            return Outcome(rows, cursor.rowcount)
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
            processors = tuple(
                compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect)
                for name in names
            )
            literals = {
                name: compiled.binds[name].value
                for name in names
                if not compiled.binds[name].required
            }
            result = _Compiled(compiled.string, names, compiled.positional, processors, literals)
            self._compiled[key] = result
            return result


def _wrapped(
    conn: Connection,
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
