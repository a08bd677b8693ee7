"""Waiting, in a race test, until a transaction of this run's database waits for a lock:
the point where another actor may commit first, deterministically."""

from __future__ import annotations

import time

from sqlalchemy import text

from app.db.transaction import transaction

# INNODB_TRX is refreshed only when it was not read for 0.1 s: polled more slowly than that.
LOCK_WAITS = text(
    "SELECT COUNT(*) FROM information_schema.INNODB_TRX t"
    " JOIN information_schema.PROCESSLIST p ON p.ID = t.trx_mysql_thread_id"
    " WHERE t.trx_state = 'LOCK WAIT' AND p.DB = DATABASE()"
)


def wait_for_a_lock_wait(timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        with transaction() as tx:
            if tx.execute(LOCK_WAITS).scalar_one():
                return
        assert time.monotonic() < deadline, "nothing ever waited for a lock"
        time.sleep(0.2)
