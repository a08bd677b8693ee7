"""The embedded default's database: SQLite under threads, as the local cloud runs it. Writers
queue behind BEGIN IMMEDIATE and the busy timeout instead of failing with "locked"."""

from __future__ import annotations

import threading
from pathlib import Path

from sqlalchemy import text

from app.db.engine import build_engine


def test_sqlite_engine_uses_wal_and_serialises_concurrent_writers(tmp_path: Path) -> None:
    engine = build_engine(f"sqlite:///{tmp_path / 'nested' / 'app.db'}")
    try:
        with engine.begin() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            conn.execute(text("CREATE TABLE counter (id INTEGER PRIMARY KEY, n INTEGER)"))
            conn.execute(text("INSERT INTO counter VALUES (1, 0)"))

        errors: list[BaseException] = []

        def bump() -> None:
            try:
                for _ in range(20):
                    # Read-modify-write: lost updates would show unless writers serialise.
                    with engine.begin() as conn:
                        n = conn.execute(text("SELECT n FROM counter WHERE id = 1")).scalar_one()
                        conn.execute(text("UPDATE counter SET n = :n WHERE id = 1"), {"n": n + 1})
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=bump) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert not errors, errors[:1]
        with engine.connect() as conn:
            assert conn.execute(text("SELECT n FROM counter")).scalar_one() == 160
    finally:
        engine.dispose()
