"""Locks in a race test: a row held locked by a transaction of its own, and waiting until a
transaction of this run's database waits for a lock: the point where another actor may
commit first, deterministically."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import Executable, Insert, Select, text

from app.db.transaction import transaction

# INNODB_TRX is refreshed only when it was not read for 0.1 s: polled more slowly than that.
LOCK_WAITS = text(
    "SELECT COUNT(*) FROM information_schema.INNODB_TRX t"
    " JOIN information_schema.PROCESSLIST p ON p.ID = t.trx_mysql_thread_id"
    " WHERE t.trx_state = 'LOCK WAIT' AND p.DB = DATABASE()"
)


def wait_for_a_lock_wait(timeout_s: float = 20.0, *, waiting: int = 1) -> None:
    """Until `waiting` transactions of this run's database wait for a lock at once."""
    # A read within 0.1 s of the last one is answered from that one's copy, which may show
    # a wait of the test before, long over: this wait's first read is a fresh one.
    time.sleep(0.15)
    deadline = time.monotonic() + timeout_s
    while True:
        with transaction() as tx:
            if tx.execute(LOCK_WAITS).scalar_one() >= waiting:
                return
        assert time.monotonic() < deadline, "nothing ever waited for a lock"
        time.sleep(0.2)


class _LetGo(Exception):
    """Ends the holder's transaction in a rollback."""


class RowLock:
    """The rows a query selects, or the row an insert writes (uncommitted, as a request in
    flight holds its Idempotency-Key), locked by a transaction of its own from `take` until
    `release`, which rolls it back (or with `commit`, commits it): a statement that touches
    them waits meanwhile."""

    def __init__(self, *, commit: bool = False) -> None:
        self.commit = commit
        self._locked, self._done = threading.Event(), threading.Event()
        self._holder: threading.Thread | None = None

    def take(self, query: Select[Any] | Insert) -> None:
        statement = query.with_for_update() if isinstance(query, Select) else query
        self._holder = threading.Thread(target=self._hold, args=(statement,))
        self._holder.start()
        assert self._locked.wait(10), "the rows were never locked"

    def _hold(self, statement: Executable) -> None:
        try:
            with transaction() as tx:
                tx.execute(statement)
                self._locked.set()
                self._done.wait(60)
                if not self.commit:
                    raise _LetGo
        except _LetGo:
            pass

    def release(self) -> None:
        self._done.set()
        if self._holder is not None:
            self._holder.join()


def held_past_one_wait(
    query: Select[Any] | Insert,
    then: Callable[[], None],
    hold_s: float = 1.5,
    *,
    commit: bool = False,
) -> None:
    """The rows `query` selects (or inserts: `RowLock`) held locked while `then()` lets
    something go on to touch them, until it has waited for them `hold_s` (1.5 s: past one
    wait with DB_LOCK_WAIT_TIMEOUT_S at 1), as a slow holder would keep them; then let go,
    rolled back or committed."""
    lock = RowLock(commit=commit)
    lock.take(query)
    try:
        then()
        wait_for_a_lock_wait()
        time.sleep(hold_s)
    finally:
        lock.release()
