"""The one transaction helper: `with transaction() as tx:` is a unit of work on one pooled
connection, committed when the block ends and rolled back when it raises.

    with transaction() as tx:
        tx.execute(update(users).where(...).values(...))   # a Core statement
        LOCK_USER.run(tx, {"user_id": user_id})             # a prepared one (app.db.prepared)
        tx.after_commit(lambda: cache.invalidate(key))      # runs once, after the commit

- Statements: `tx.execute` runs Core statements; `Prepared.run(tx, ...)` runs a statement
  compiled once per dialect on the driver's cursor (the saga's hot path). Both run on the
  same connection, inside the same transaction. On MySQL the Core `Connection` is built only
  when a Core statement runs, so a unit of work made only of prepared statements costs no
  Core machinery at all; on SQLite it exists from the start, because `BEGIN IMMEDIATE`
  comes from its begin event (app.db.engine).
- Effects after commit: `tx.after_commit(effect)` registers a call that must follow the
  commit (dropping a cached value, publishing a queue message, announcing a task change). It
  runs once, after the commit and after the connection went back to the pool, in the order
  registered; never when the transaction rolls back, nor when the savepoint it was
  registered in (`tx.savepoint()`) rolls back. An effect that fails is logged and never
  raised: the change it follows is committed.
  One case is in doubt, and no helper can settle it: a connection lost after COMMIT was
  sent and before its answer came. The server may have committed; the block raises
  `CommitInDoubt` (503, as any lost connection) and its effects never run. So an effect
  is one whose loss a later pass makes good: a runner message the sweeper publishes again,
  a task announcement the next one supersedes, a cached value that lives out its TTL (an
  hour for a profile, a day for the plan and pipeline lists) unless the change held it
  (`cache.hold`, for what a stale value must never hide). A client that retries the 503
  with its Idempotency-Key is answered the committed result.
- Compensations: `tx.on_rollback(effect)` registers a call that must follow a change that
  did not happen: giving back what the block took outside the database for it (a host slot
  in Redis, taken with a claim). It runs once, after the connection went back to the pool,
  when the block raises or its commit fails, or when the savepoint it was registered in rolls
  back; never after a commit. It runs too for the commit in doubt above, so it is one that
  is harmless if the change did commit. One that fails is logged, never raised over the
  block's own error. A caller that undoes, on the block's failure, what it did before the
  block (a provider's trade made for an order) tells `CommitInDoubt` apart: the change may
  stand, and what it holds must too.
- Failures: an exhausted pool, an unreachable database or a connection lost mid-transaction
  (a server that stops answering is one, past a lock wait and a margin: app.db.engine) is
  `503 SERVICE_UNAVAILABLE`, not a hang and not a 500; the log names host and database,
  never the password, and a connection lost at COMMIT says so (`at=commit`). A lost
  connection is discarded by the pool, never handed out again. A block that fails on its
  own account after its connection was lost answers its own error: the rollback that finds
  the connection gone is logged, not raised over it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import exc
from sqlalchemy.engine import Connection, CursorResult, Dialect, Engine, RootTransaction
from sqlalchemy.pool import PoolProxiedConnection
from sqlalchemy.sql.expression import Executable

from app.db.engine import get_engine
from app.db.pool import TXN_OPEN, PoolUse
from app.errors import AppError, ErrorCode
from app.observability import logging as applog
from app.observability.metrics import DB_POOL_TIMEOUTS

log = applog.get_logger("app.db")
Effect = Callable[[], object]


class CommitInDoubt(AppError):
    """The connection was lost at COMMIT: sent, its answer never came, so the server may
    have committed or not, and nobody here can tell. 503 as any lost connection (a client
    that retries with its Idempotency-Key is answered the committed result, if there is
    one); what came before the block and belongs to the change is kept."""

    def __init__(self) -> None:
        super().__init__(ErrorCode.SERVICE_UNAVAILABLE)


class Transaction:
    """One open transaction (see the module docstring). Made by `transaction()` only."""

    __slots__ = (
        "_compensations",
        "_core",
        "_effects",
        "_root",
        "connection",
        "dialect",
        "engine",
        "invalidated",
    )

    def __init__(self, engine: Engine, connection: PoolProxiedConnection) -> None:
        self.engine = engine
        self.dialect: Dialect = engine.dialect
        self.connection = connection  # the pooled driver connection every statement runs on
        self.invalidated = False
        self._core: Connection | None = None
        self._root: RootTransaction | None = None
        self._effects: list[tuple[Effect, dict[str, Any]]] = []
        self._compensations: list[tuple[Effect, dict[str, Any]]] = []

    # -- statements ---------------------------------------------------------------------

    def execute(self, statement: Executable, parameters: Any = None) -> CursorResult[Any]:
        """A Core statement (or a list of parameter sets, for an executemany)."""
        return self.core().execute(statement, parameters)

    def core(self) -> Connection:
        """The Core connection over this transaction's driver connection, built on first use."""
        if self._core is None:
            self._core = Connection(self.engine, connection=self.connection)
            self._root = self._core.begin()
        return self._core

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        """A nested transaction: rolled back alone when the block raises, effects included
        (and its compensations run)."""
        mark, compensations = len(self._effects), len(self._compensations)
        try:
            with self.core().begin_nested():
                yield
        except BaseException:
            del self._effects[mark:]
            _run(self._compensations[compensations:], "rollback compensation failed")
            del self._compensations[compensations:]
            raise

    def invalidate(self, error: BaseException | None = None) -> None:
        """The connection is broken: the pool closes it and never hands it out again, nor
        any connection opened before it (a restart takes them all)."""
        self.invalidated = True
        PoolUse.of(self.engine).saw_lost()
        if self._core is not None:
            self._core.invalidate(error)
        else:
            self.connection.invalidate(error)

    # -- effects --------------------------------------------------------------------------

    def after_commit(self, effect: Effect, **fields: Any) -> None:
        """Run `effect()` once this transaction has committed; never if it rolls back.
        `fields` go on the log line if it fails (say what it was for: `task_id=...`)."""
        self._effects.append((effect, fields))

    def on_rollback(self, effect: Effect, **fields: Any) -> None:
        """Run `effect()` once if this transaction (or the savepoint it is registered in)
        does not commit; never after a commit. `fields` as for `after_commit`."""
        self._compensations.append((effect, fields))

    # -- the end ------------------------------------------------------------------------

    def _commit(self) -> None:
        try:
            if self._root is not None:
                self._root.commit()
                return
            try:
                self.connection.commit()
            except self.dialect.loaded_dbapi.Error as error:
                raise driver_error(self, "COMMIT", None, error, None) from error
        except exc.DBAPIError as error:
            if not error.connection_invalidated:
                raise  # the server answered it: nothing was committed
            _log_lost(self.engine, error, at="commit")
            raise CommitInDoubt() from error
        self.connection.info[TXN_OPEN] = False

    def _rollback(self) -> None:
        if self.invalidated:
            return
        if self._root is not None:
            if self._root.is_active:
                try:
                    self._root.rollback()
                except exc.DBAPIError as error:
                    if not error.connection_invalidated:
                        raise
                    # Lost before the block failed: the server drops the transaction with
                    # the connection, and the block's own error is what the caller answers.
                    self.invalidated = True
                    _log_lost(self.engine, error)
            return
        # Left to the pool's reset at check-in (app.db.pool.install_lazy_reset): it rolls
        # back a connection whose transaction is still open, and discards one that fails to.

    def _close(self) -> None:
        if self._core is not None:
            self._core.close()
        elif not self.invalidated:
            self.connection.close()

    def _run_effects(self) -> None:
        _run(self._effects, "after-commit effect failed")
        self._effects.clear()

    def _run_compensations(self) -> None:
        _run(self._compensations, "rollback compensation failed")
        self._compensations.clear()


def _run(effects: list[tuple[Effect, dict[str, Any]]], failed: str) -> None:
    for effect, fields in effects:
        try:
            effect()
        except Exception as error:  # noqa: BLE001 - the transaction has ended; log, carry on
            applog.log_fields(
                log,
                logging.WARNING,
                failed,
                effect=getattr(effect, "__qualname__", type(effect).__name__),
                error=type(error).__name__,
                **fields,
            )


@contextmanager
def transaction(*, isolation: str | None = None) -> Iterator[Transaction]:
    """One unit of work (see the module docstring). `isolation` sets the level of this
    transaction alone (e.g. "REPEATABLE READ" for a consistent read of several tables)."""
    engine = get_engine()
    tx = Transaction(engine, checked_out(engine))
    committed = False
    try:
        with unavailable_if_lost(engine):
            if engine.dialect.name == "sqlite":
                tx.core()  # SQLite serialises writers: every transaction is a snapshot
            elif isolation is not None:
                _isolated(tx, isolation)
            else:
                tx.connection.info[TXN_OPEN] = True
            yield tx
            tx._commit()
            committed = True
    finally:
        try:
            if not committed:
                tx._rollback()
            tx._close()
        finally:
            if not committed:  # whether or not the rollback itself went through
                tx._run_compensations()
    tx._run_effects()


def _isolated(tx: Transaction, isolation: str) -> None:
    # Set before the transaction begins; the pool puts the default back at check-in. The
    # level goes to the server on the driver's cursor, outside Core's error handling, so
    # its failure (the first statement to find a connection gone) is turned as ours are.
    core = Connection(tx.engine, connection=tx.connection)
    try:
        tx._core = core.execution_options(isolation_level=isolation)
    except tx.dialect.loaded_dbapi.Error as error:
        raise driver_error(tx, "SET TRANSACTION ISOLATION LEVEL", None, error, None) from error
    tx._root = tx._core.begin()


def checked_out(engine: Engine) -> PoolProxiedConnection:
    """A connection from the pool; an exhausted pool or an unreachable database is 503."""
    try:
        with PoolUse.of(engine).waiting():
            return engine.raw_connection()
    except exc.TimeoutError as error:
        DB_POOL_TIMEOUTS.inc()
        applog.log_fields(log, logging.WARNING, "db pool exhausted", **_describe(engine))
        raise AppError(ErrorCode.SERVICE_UNAVAILABLE) from error
    # The pool hands on the driver's own error (wrong password, refused, unknown host), and
    # the driver refuses arguments it does not take (TypeError, AttributeError) or files
    # it cannot read (OSError) from DATABASE_URL's query. Named by class and code: the
    # driver's message names the host it tried, and past an unescaped `@` in the password
    # the host holds its tail (a `?` puts it in the query, an argument's name).
    except (engine.dialect.loaded_dbapi.Error, TypeError, AttributeError, OSError) as error:
        from app.crypto.resolution import describe_database_error  # cold start: on failure

        described = describe_database_error(error)
        applog.log_fields(
            log, logging.ERROR, "db connection failed", **_describe(engine), error=described
        )
        # Not chained: a job that fails on it logs its traceback, causes included.
        raise AppError(ErrorCode.SERVICE_UNAVAILABLE) from None


@contextmanager
def unavailable_if_lost(engine: Engine) -> Iterator[None]:
    """A connection lost inside the block (its DBAPIError says it was invalidated) is 503."""
    try:
        yield
    except exc.DBAPIError as error:
        if not error.connection_invalidated:
            raise
        # The server went away mid-transaction (restart, failover, wait_timeout), before
        # COMMIT was sent (one lost at COMMIT is `CommitInDoubt`): the pool has dropped the
        # connection, and the server rolls the transaction back with it. A dependency
        # failure, not a bug of ours.
        _log_lost(engine, error)
        raise AppError(ErrorCode.SERVICE_UNAVAILABLE) from error


def _log_lost(engine: Engine, error: exc.DBAPIError, **fields: Any) -> None:
    from app.crypto.resolution import describe_database_error  # cold start: on failure

    # By class and driver code: the driver's message may name the server it lost.
    described = describe_database_error(error)
    applog.log_fields(
        log, logging.ERROR, "db connection lost", **_describe(engine), error=described, **fields
    )


def driver_error(
    tx: Transaction, sql: str, values: Any, error: Exception, cursor: Any
) -> BaseException:
    """A driver's exception as the `sqlalchemy.exc.DBAPIError` subclass Core would raise
    (`IntegrityError`, `OperationalError`, ...), parameters hidden; a lost connection is
    invalidated first, so the block answers 503 and the pool never reuses it."""
    dialect = tx.dialect
    lost = dialect.is_disconnect(error, tx.connection.dbapi_connection, cursor)  # type: ignore[arg-type]
    if lost:
        tx.invalidate(error)
    return exc.DBAPIError.instance(
        sql,
        values,
        error,
        dialect.loaded_dbapi.Error,
        hide_parameters=True,
        connection_invalidated=lost,
        dialect=dialect,
    )


def _describe(engine: Engine) -> dict[str, Any]:
    url = engine.url
    # A password holding an unescaped `@` leaves its tail in the host the URL parses to
    # (`Tail...@127.0.0.1`): what follows the last `@` is the host alone.
    host = url.host.rpartition("@")[2] if url.host else url.host
    return {"host": host, "port": url.port, "database": url.database}
