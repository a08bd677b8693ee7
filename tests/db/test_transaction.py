"""The after-commit mechanism of `app.db.transaction`: an effect registered in a transaction
runs once, after the commit (and after the connection went back to the pool), in order; never
when the transaction or its savepoint rolls back, nor when the commit itself fails; a failing
effect is logged and never raised. Its mirror, `on_rollback`: a compensation runs once when
the transaction or its savepoint does not commit, the commit's failure included, and never
after a commit. On MariaDB and on SQLite alike. A connection lost at COMMIT is
`CommitInDoubt`; a lock conflict the server answers at COMMIT is that conflict, run again."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pymysql
import pytest
from pymysql.constants import ER
from sqlalchemy import insert, select, text

from app.clock import utcnow
from app.db.conflicts import retry_conflicts
from app.db.engine import get_engine
from app.db.pool import stats
from app.db.tables import users
from app.db.transaction import CommitInDoubt, Transaction, transaction
from app.errors import AppError, ErrorCode
from app.ids import new_id
from tests.db.test_prepared import INSERT_USER
from tests.support.logs import capture_logs
from tests.support.settings import app_engine_under


def insert_user(tx: Transaction) -> str:
    user_id, now = new_id(), utcnow()
    tx.execute(insert(users).values(id=user_id, created_at=now, updated_at=now))
    return user_id


def stored(user_id: str) -> bool:
    with transaction() as tx:
        return tx.execute(select(users.c.id).where(users.c.id == user_id)).first() is not None


class Recorder:
    """Effects that note what they saw when they ran."""

    def __init__(self) -> None:
        self.ran: list[str] = []

    def effect(self, name: str, user_id: str = "") -> Callable[[], None]:
        def run() -> None:
            # After the commit: a new transaction sees the row. After the check-in: the
            # connection of the committed transaction is no longer in use.
            self.ran.append(f"{name}:{stored(user_id) if user_id else '-'}")

        return run


def test_an_effect_runs_once_after_the_commit_in_order() -> None:
    seen = Recorder()
    with transaction() as tx:
        user_id = insert_user(tx)
        tx.after_commit(seen.effect("first", user_id))
        tx.after_commit(lambda: seen.ran.append(f"in-use:{stats(get_engine())['used']}"))
        tx.after_commit(seen.effect("second", user_id))
        assert seen.ran == []  # nothing runs before the commit
    assert seen.ran == ["first:True", "in-use:0", "second:True"]


def test_an_effect_of_a_rolled_back_transaction_never_runs() -> None:
    seen = Recorder()
    with pytest.raises(RuntimeError), transaction() as tx:
        user_id = insert_user(tx)
        tx.after_commit(seen.effect("never", user_id))
        raise RuntimeError("the work failed")
    assert seen.ran == []
    assert not stored(user_id)


def test_an_effect_of_a_rolled_back_savepoint_never_runs_while_the_rest_commits() -> None:
    # Its compensations run, at its rollback, and no other.
    seen = Recorder()
    with transaction() as tx:
        kept = insert_user(tx)
        tx.after_commit(seen.effect("kept", kept))
        tx.on_rollback(seen.effect("never", kept))
        with pytest.raises(RuntimeError), tx.savepoint():
            dropped = insert_user(tx)
            tx.after_commit(seen.effect("dropped", dropped))
            tx.on_rollback(seen.effect("undone", dropped))
            raise RuntimeError("only the savepoint rolls back")
        with tx.savepoint():
            tx.after_commit(seen.effect("nested-kept", kept))
            tx.on_rollback(seen.effect("never", kept))
    assert seen.ran == ["undone:False", "kept:True", "nested-kept:True"]
    assert not stored(dropped)


def test_an_effect_never_runs_when_the_commit_fails() -> None:
    seen = Recorder()
    with (
        get_engine().connect() as killer,
        pytest.raises(AppError) as caught,
        transaction() as tx,
    ):
        user_id = insert_user(tx)
        tx.after_commit(seen.effect("never", user_id))
        thread = tx.connection.dbapi_connection.thread_id()  # type: ignore[union-attr]
        killer.exec_driver_sql(f"KILL CONNECTION {thread}")
    assert caught.value.code is ErrorCode.SERVICE_UNAVAILABLE
    assert isinstance(caught.value, CommitInDoubt)  # lost at COMMIT: the block cannot tell
    assert seen.ran == []
    assert not stored(user_id)


@pytest.mark.parametrize("code", [ER.LOCK_DEADLOCK, ER.LOCK_WAIT_TIMEOUT])
@pytest.mark.parametrize("driver_path", [False, True], ids=["core", "driver"])
def test_a_lock_conflict_answered_at_commit_is_run_again_not_in_doubt(
    code: int, driver_path: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server refused the COMMIT (a deadlock is reported there by Galera's certification):
    it answered, so nothing was committed, and the block raises the conflict itself, which
    `retry_conflicts` runs again; never `CommitInDoubt`, which nothing may run again."""
    commit = pymysql.connections.Connection.commit
    refused: list[int] = []

    def refuse_once(connection: pymysql.connections.Connection) -> None:
        if refused:
            return commit(connection)
        refused.append(code)
        connection.rollback()  # what the server does with a transaction it refuses
        raise pymysql.err.OperationalError(code, "a lock conflict, answered at COMMIT")

    seen = Recorder()
    written: list[str] = []

    def work() -> None:
        with transaction() as tx:
            if driver_path:
                written.append(new_id())
                INSERT_USER.run(tx, {"id": written[-1], "hash": None, "now": utcnow()})
            else:
                written.append(insert_user(tx))
            tx.on_rollback(seen.effect("undone", written[-1]))
            tx.after_commit(seen.effect("done", written[-1]))

    monkeypatch.setattr(pymysql.connections.Connection, "commit", refuse_once)
    try:
        retry_conflicts(work)
    finally:
        monkeypatch.undo()
    assert refused == [code]
    assert seen.ran == ["undone:False", "done:True"]
    assert [stored(user_id) for user_id in written] == [False, True]
    assert stats(get_engine())["used"] == 0


def test_a_compensation_runs_once_when_the_block_raises_and_never_after_a_commit() -> None:
    seen = Recorder()
    with pytest.raises(RuntimeError, match="the block's own"), transaction() as tx:
        user_id = insert_user(tx)
        tx.on_rollback(seen.effect("undone", user_id))
        tx.after_commit(seen.effect("never", user_id))
        raise RuntimeError("the block's own")
    with transaction() as tx:
        kept = insert_user(tx)
        tx.on_rollback(seen.effect("never", kept))
    assert seen.ran == ["undone:False"]


def test_a_compensation_runs_when_the_commit_fails() -> None:
    seen = Recorder()
    with (
        get_engine().connect() as killer,
        pytest.raises(CommitInDoubt),
        transaction() as tx,
    ):
        user_id = insert_user(tx)
        tx.on_rollback(seen.effect("undone", user_id))
        thread = tx.connection.dbapi_connection.thread_id()  # type: ignore[union-attr]
        killer.exec_driver_sql(f"KILL CONNECTION {thread}")
    assert seen.ran == ["undone:False"]
    assert stats(get_engine())["used"] == 0  # the lost connection went back, to be dropped


def test_a_failing_compensation_is_logged_and_the_blocks_error_raised() -> None:
    def broken() -> None:
        raise ConnectionError("redis went away")

    seen = Recorder()
    with (
        capture_logs() as logs,
        pytest.raises(RuntimeError, match="the block's own"),
        transaction() as tx,
    ):
        tx.on_rollback(broken)
        tx.on_rollback(seen.effect("after"))
        raise RuntimeError("the block's own")
    assert seen.ran == ["after:-"]
    (failed,) = logs.where(message="rollback compensation failed")
    assert failed["error"] == "ConnectionError" and "broken" in failed["effect"]


def test_a_failing_effect_is_logged_and_the_others_still_run() -> None:
    seen = Recorder()

    def broken() -> None:
        raise ConnectionError("redis went away")

    with capture_logs() as logs, transaction() as tx:
        user_id = insert_user(tx)
        tx.after_commit(broken)
        tx.after_commit(seen.effect("after", user_id))
    assert seen.ran == ["after:True"]
    failed = logs.where(message="after-commit effect failed")
    assert failed and failed[0]["error"] == "ConnectionError"
    assert "broken" in failed[0]["effect"]


def test_effects_follow_the_commit_on_sqlite_too(tmp_path: Path) -> None:
    seen: list[int] = []
    with app_engine_under(DATABASE_URL=f"sqlite:///{tmp_path / 'app.db'}"):
        with transaction() as tx:
            tx.execute(text("CREATE TABLE t (n INTEGER)"))
        with pytest.raises(RuntimeError), transaction() as tx:
            tx.execute(text("INSERT INTO t VALUES (1)"))
            tx.after_commit(lambda: seen.append(1))
            raise RuntimeError("rolled back")
        with transaction() as tx:
            tx.execute(text("INSERT INTO t VALUES (2)"))

            def count() -> None:
                with transaction() as reader:
                    seen.append(int(reader.execute(text("SELECT COUNT(*) FROM t")).scalar_one()))

            tx.after_commit(count)
    assert seen == [1]
