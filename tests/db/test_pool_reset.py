"""Check-in resets: ROLLBACK only when a transaction may still be open."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.engine import Connection

from tests.db.test_pool import engine_under


def rollbacks_run(conn: Connection) -> int:
    row = conn.exec_driver_sql("SHOW SESSION STATUS LIKE 'Com_rollback'").one()
    return int(row[1])


def test_a_committed_transaction_is_not_rolled_back_again() -> None:
    with engine_under(DB_POOL_MAX="1") as engine:
        with engine.connect() as conn:
            before = rollbacks_run(conn)
            conn.commit()
        for _ in range(5):
            with engine.begin() as conn:
                conn.execute(text("SELECT 1"))
        with engine.connect() as conn:
            # One pool connection throughout, and no ROLLBACK after any of the commits (the
            # pool's default reset would have sent six).
            assert rollbacks_run(conn) - before == 0


def test_a_connection_returned_mid_transaction_is_rolled_back() -> None:
    with engine_under(DB_POOL_MAX="1") as engine:
        with engine.begin() as conn:
            conn.exec_driver_sql("CREATE TEMPORARY TABLE reset_probe (n INT) ENGINE=InnoDB")
        raw = engine.raw_connection()
        cursor = raw.cursor()
        cursor.execute("INSERT INTO reset_probe VALUES (1)")
        cursor.close()
        raw.close()  # checked in with the insert uncommitted
        with engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT COUNT(*) FROM reset_probe").scalar() == 0

        with engine.connect() as conn:
            conn.exec_driver_sql("INSERT INTO reset_probe VALUES (2)")
            # closed without commit: SQLAlchemy's own close rolls it back
        with engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT COUNT(*) FROM reset_probe").scalar() == 0
