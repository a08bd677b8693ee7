"""Core statements for the hottest paths, compiled once per dialect and run on the driver.

`Connection.execute` costs tens of microseconds of CPU per statement on top of the round
trip (compiled-cache lookup, parameter processing, result wrapping), as much as the round
trip itself on a short statement, and under a hot row lock that CPU is also time the lock
is held. The quota saga and the runner's claims and settles go through this instead: the
statement is still written once, in Core, against the table definitions; it is compiled for
the connection's dialect on first use; each call binds values through the column types' own
bind processors (so `UtcDateTime` still refuses a naive datetime) and runs on the DBAPI
cursor of the transaction's connection (`app.db.transaction`), inside that transaction. A
unit of work made only of prepared statements never builds a Core `Connection`.

Errors keep SQLAlchemy's shape: a driver error becomes the `sqlalchemy.exc.DBAPIError`
subclass `Connection.execute` would raise (`IntegrityError`, `OperationalError`, ...), with
parameters hidden, and a lost connection is invalidated so that the transaction answers 503
and the pool never hands it out again.

Use it only where a benchmark shows the difference; everything else uses `tx.execute`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from sqlalchemy import exc
from sqlalchemy.engine import Dialect
from sqlalchemy.sql.expression import Executable

from app.db.transaction import Transaction, driver_error


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

    def run(self, tx: Transaction, params: Mapping[str, Any]) -> Outcome:
        dialect = tx.dialect
        compiled = self._compiled.get((type(dialect), dialect.paramstyle)) or self._compile(dialect)
        if compiled.literals:
            params = {**compiled.literals, **params}
        values: Any
        if compiled.positional:
            values = [params[n] if p is None else p(params[n]) for n, p in compiled.binds]
        else:
            values = {n: params[n] if p is None else p(params[n]) for n, p in compiled.binds}
        dbapi_conn = tx.connection.dbapi_connection
        if dbapi_conn is None:  # pragma: no cover - an invalidated connection
            raise exc.ResourceClosedError("This connection is closed")
        sql = compiled.sql
        cursor = dbapi_conn.cursor()
        try:
            # The engine's cursor events still fire (tracing instrumentation hooks them), with
            # no execution context; a listener's rewrite of the statement is honoured.
            events = tx.engine.dispatch
            traced = bool(events.before_cursor_execute or events.after_cursor_execute)
            if traced:
                for before in events.before_cursor_execute:
                    sql, values = before(tx, cursor, sql, values, None, False)
            cursor.execute(sql, values)
            if traced:
                for after in events.after_cursor_execute:
                    after(tx, cursor, sql, values, None, False)
            return Outcome(cursor.fetchall() if cursor.description else (), cursor.rowcount)
        except dialect.loaded_dbapi.Error as error:
            raise driver_error(tx, sql, values, error, cursor) from error
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
