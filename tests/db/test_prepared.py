"""Prepared statements (the saga's hot path) keep what Core's execute guarantees: types bind
through the column types, errors keep SQLAlchemy's classes with parameters hidden, a lost
connection is 503 and never reused, the engine's cursor events fire, and SQLite works too.
A transaction made of prepared statements alone (no Core connection) commits, rolls back and
fails like any other."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import bindparam, event, exc, insert, select, text, update

from app.clock import utcnow
from app.db.engine import get_engine
from app.db.prepared import Prepared
from app.db.tables import users
from app.db.transaction import CommitInDoubt, transaction
from app.db.types import UtcDateTime
from app.errors import AppError, ErrorCode
from app.ids import new_id
from tests.support.logs import capture_logs
from tests.support.settings import app_engine_under

INSERT_USER = Prepared(
    insert(users).values(
        id=bindparam("id"),
        password_hash=bindparam("hash"),
        created_at=bindparam("now", type_=UtcDateTime()),
        updated_at=bindparam("now", type_=UtcDateTime()),
    )
)
USER = Prepared(
    select(users.c.id, users.c.gender, users.c.created_at).where(users.c.id == bindparam("id"))
)
# A literal in the statement (`gender == 'unknown'`) travels with it.
SET_GENDER_ONCE = Prepared(
    update(users)
    .where(users.c.id == bindparam("id"), users.c.gender == "unknown")
    .values(gender=bindparam("gender"))
)


def test_binds_through_the_column_types_and_reports_rows_and_counts() -> None:
    user_id, now = new_id(), utcnow()
    with transaction() as conn:
        assert INSERT_USER.run(conn, {"id": user_id, "hash": None, "now": now}).rowcount == 1
        assert SET_GENDER_ONCE.run(conn, {"id": user_id, "gender": "female"}).rowcount == 1
        assert SET_GENDER_ONCE.run(conn, {"id": user_id, "gender": "male"}).rowcount == 0
        row = USER.run(conn, {"id": user_id}).first()
    assert row is not None
    assert row[:2] == (user_id, "female")
    # Stored as naive UTC by UtcDateTime's bind processor: the same instant.
    assert row[2] == now.replace(tzinfo=None)
    with transaction() as conn:
        assert USER.run(conn, {"id": "nobody"}).first() is None


def test_a_naive_datetime_is_refused_before_anything_is_sent() -> None:
    with pytest.raises(ValueError, match="naive"), transaction() as conn:
        INSERT_USER.run(conn, {"id": new_id(), "hash": None, "now": datetime(2026, 1, 1)})


def test_a_driver_error_is_sqlalchemys_error_class_without_its_parameters() -> None:
    user_id, now = new_id(), utcnow()
    secret = "$2b$12$" + "s" * 53
    with transaction() as conn:
        INSERT_USER.run(conn, {"id": user_id, "hash": None, "now": now})
    with capture_logs() as logs, pytest.raises(exc.IntegrityError) as caught, transaction() as conn:
        INSERT_USER.run(conn, {"id": user_id, "hash": secret, "now": now})
    assert secret not in str(caught.value)
    assert "hidden due to hide_parameters" in str(caught.value)
    assert secret not in logs.text


def test_a_connection_lost_mid_transaction_is_503_and_is_not_reused() -> None:
    with get_engine().connect() as killer, pytest.raises(AppError) as caught, transaction() as conn:
        lost_thread = conn.connection.dbapi_connection.thread_id()  # type: ignore[union-attr]
        killer.exec_driver_sql(f"KILL CONNECTION {lost_thread}")
        USER.run(conn, {"id": new_id()})
    assert caught.value.code is ErrorCode.SERVICE_UNAVAILABLE
    with transaction() as conn:
        assert conn.connection.dbapi_connection.thread_id() != lost_thread  # type: ignore[union-attr]
        assert USER.run(conn, {"id": new_id()}).first() is None


def test_the_engines_cursor_events_see_every_statement() -> None:
    seen: list[tuple[str, str]] = []

    def before(_c: Any, _cur: Any, statement: str, *_: Any) -> None:
        seen.append(("before", statement.split()[0]))

    def after(_c: Any, _cur: Any, statement: str, *_: Any) -> None:
        seen.append(("after", statement.split()[0]))

    engine = get_engine()
    event.listen(engine, "before_cursor_execute", before)
    event.listen(engine, "after_cursor_execute", after)
    try:
        with transaction() as conn:
            USER.run(conn, {"id": new_id()})
    finally:
        event.remove(engine, "before_cursor_execute", before)
        event.remove(engine, "after_cursor_execute", after)
    assert seen == [("before", "SELECT"), ("after", "SELECT")]


def test_the_same_statement_runs_on_sqlite_too(tmp_path: Path) -> None:
    with app_engine_under(DATABASE_URL=f"sqlite:///{tmp_path / 'app.db'}"):
        with transaction() as tx:
            tx.execute(
                text(
                    "CREATE TABLE users (id VARCHAR(32) PRIMARY KEY, password_hash TEXT, "
                    "gender VARCHAR(8) NOT NULL DEFAULT 'unknown', created_at DATETIME, "
                    "updated_at DATETIME)"
                )
            )
        user_id, now = new_id(), utcnow()
        with transaction() as tx:
            INSERT_USER.run(tx, {"id": user_id, "hash": None, "now": now})
            assert SET_GENDER_ONCE.run(tx, {"id": user_id, "gender": "male"}).rowcount == 1
        with pytest.raises(RuntimeError), transaction() as tx:
            SET_GENDER_ONCE.run(tx, {"id": user_id, "gender": "female"})
            raise RuntimeError("rolled back")
        with transaction() as tx:
            row = USER.run(tx, {"id": user_id}).first()
        assert row is not None and row[:2] == (user_id, "male")


# -- transactions of prepared statements alone ------------------------------------------


def thread_of(tx: Any) -> int:
    return int(tx.connection.dbapi_connection.thread_id())


def in_transaction(tx: Any) -> int:
    return int(tx.core().exec_driver_sql("SELECT @@in_transaction").scalar())


def test_prepared_statements_alone_commit_on_success_and_roll_back_on_error() -> None:
    kept, dropped, now = new_id(), new_id(), utcnow()
    with transaction() as tx:
        INSERT_USER.run(tx, {"id": kept, "hash": None, "now": now})
    with pytest.raises(RuntimeError), transaction() as tx:
        INSERT_USER.run(tx, {"id": dropped, "hash": None, "now": now})
        raise RuntimeError("the work failed half way")
    with transaction() as tx:
        # The same pooled connection, handed out again, holds no open transaction.
        assert in_transaction(tx) == 0
        assert USER.run(tx, {"id": kept}).first() is not None
        assert USER.run(tx, {"id": dropped}).first() is None


def test_core_and_prepared_statements_share_one_transaction() -> None:
    user_id, now = new_id(), utcnow()
    with pytest.raises(RuntimeError), transaction() as tx:
        INSERT_USER.run(tx, {"id": user_id, "hash": None, "now": now})
        # Core, after a prepared statement, sees its uncommitted row: the same transaction.
        assert tx.execute(select(users.c.id).where(users.c.id == user_id)).scalar() == user_id
        raise RuntimeError("both roll back")
    with transaction() as tx:
        assert USER.run(tx, {"id": user_id}).first() is None


def test_prepared_statements_that_lose_their_connection_are_503_and_not_reused() -> None:
    with get_engine().connect() as killer:
        with (
            capture_logs() as logs,
            pytest.raises(AppError) as caught,
            transaction() as tx,
        ):
            lost = thread_of(tx)
            killer.exec_driver_sql(f"KILL CONNECTION {lost}")
            USER.run(tx, {"id": new_id()})
        assert caught.value.code is ErrorCode.SERVICE_UNAVAILABLE
        assert not isinstance(caught.value, CommitInDoubt)  # COMMIT was never sent
        [lost_line] = logs.where(message="db connection lost")
        assert "at" not in lost_line
        # Lost at the commit: the statements went through, the COMMIT did not, and the
        # driver cannot tell whether the server had it.
        user_id = new_id()
        with capture_logs() as logs, pytest.raises(CommitInDoubt) as at_commit, transaction() as tx:
            INSERT_USER.run(tx, {"id": user_id, "hash": None, "now": utcnow()})
            killer.exec_driver_sql(f"KILL CONNECTION {thread_of(tx)}")
        assert at_commit.value.code is ErrorCode.SERVICE_UNAVAILABLE
        assert logs.where(message="db connection lost", at="commit")
    with transaction() as tx:
        assert thread_of(tx) != lost
        assert USER.run(tx, {"id": user_id}).first() is None


def test_a_transaction_on_an_exhausted_pool_is_503() -> None:
    with (
        app_engine_under(DB_POOL_MAX="1", DB_POOL_ACQUIRE_TIMEOUT_S="0.2") as engine,
        engine.connect(),
        pytest.raises(AppError) as caught,
        transaction(),
    ):
        pass
    assert caught.value.code is ErrorCode.SERVICE_UNAVAILABLE
