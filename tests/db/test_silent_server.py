"""A server that stops answering (a failover that moved its address without a reset, a
dropped network path) is a lost connection once a statement's answer is overdue past its
longest lock wait: the block answers 503 and logs `db connection lost`, or raises
`CommitInDoubt` when it was the COMMIT's answer that never came, and the pool drops the
connection. A lock wait of the full DB_LOCK_WAIT_TIMEOUT_S is never cut: it ends as the
server's lock conflict. A migration's statements are never cut at all."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from sqlalchemy import insert, select, text, update
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from app.clock import utcnow
from app.db import migrate
from app.db.conflicts import lock_conflict_code
from app.db.engine import answer_timeout_s
from app.db.tables import users
from app.db.transaction import CommitInDoubt, transaction
from app.errors import AppError, ErrorCode
from app.ids import new_id
from tests.db.test_prepared import INSERT_USER
from tests.db.test_transaction import stored
from tests.support.lock_waits import RowLock
from tests.support.logs import capture_logs
from tests.support.net import Muting, muted_after
from tests.support.pipelines import Customer
from tests.support.settings import app_engine_under

DATABASE_URL = os.environ["DATABASE_URL"]
LOCK_WAIT_S = 1
# COM_QUERY (0x03) "COMMIT": what PyMySQL sends for a commit, on either path.
COMMIT = b"\x03COMMIT"


@pytest.fixture
def one_second_waits() -> Iterator[None]:
    with app_engine_under(DB_LOCK_WAIT_TIMEOUT_S=str(LOCK_WAIT_S), DB_POOL_MAX="1"):
        yield


def server_thread() -> int:
    """The server's id of the connection the next unit of work gets."""
    with transaction() as tx:
        return int(tx.execute(text("SELECT CONNECTION_ID()")).scalar_one())


@pytest.mark.slow  # one answer waited for past the timeout (6 s)
def test_a_statement_whose_answer_never_comes_is_a_lost_connection(
    one_second_waits: None,
) -> None:
    before = server_thread()
    overdue = answer_timeout_s(LOCK_WAIT_S) + 2
    with capture_logs() as logs, pytest.raises(AppError) as caught, transaction() as tx:
        tx.execute(text("SELECT SLEEP(:s)"), {"s": overdue})
    assert caught.value.code is ErrorCode.SERVICE_UNAVAILABLE
    [lost] = logs.where(message="db connection lost")
    assert lost["error"] == "OperationalError 2013"  # lost during the query: timed out
    # The connection was dropped, not handed out again; the next unit of work is served.
    assert server_thread() != before


@pytest.mark.slow  # the COMMIT's answer waited for past the timeout (6 s) on each path
@pytest.mark.parametrize("driver_path", [False, True], ids=["core", "driver"])
def test_a_commit_whose_answer_never_comes_is_in_doubt(driver_path: bool) -> None:
    url = make_url(DATABASE_URL)
    user_id = new_id()
    outcome: list[object] = []
    with muted_after((url.host or "127.0.0.1", url.port or 3306), COMMIT) as proxy:
        proxied = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
        with app_engine_under(DATABASE_URL=proxied, DB_LOCK_WAIT_TIMEOUT_S=str(LOCK_WAIT_S)):
            with capture_logs() as logs:
                committing = threading.Thread(
                    target=lambda: outcome.append(
                        _outcome(lambda: _insert(user_id, proxy, driver_path))
                    )
                )
                committing.start()
                committing.join(answer_timeout_s(LOCK_WAIT_S) + 10)
                # Else it waits until the proxy goes (as an invocation would, until killed).
                assert not committing.is_alive(), "the COMMIT's answer is still awaited"
            assert isinstance(outcome[0], CommitInDoubt)
            assert logs.where(message="db connection lost", at="commit")
            # A new connection (its COMMIT not sent yet) is served as before.
            with transaction() as tx:
                assert tx.execute(text("SELECT 1")).scalar_one() == 1
    # Which is why it is in doubt: the server did commit what nobody was told of.
    assert stored(user_id)


def _insert(user_id: str, proxy: Muting, driver_path: bool) -> None:
    """A user inserted, on the driver's cursor or through Core; the server's answers cease
    from its COMMIT on."""
    with transaction() as tx:
        if driver_path:
            INSERT_USER.run(tx, {"id": user_id, "hash": None, "now": utcnow()})
        else:
            tx.execute(insert(users).values(id=user_id, created_at=utcnow(), updated_at=utcnow()))
        proxy.arm()  # past the connection's set-up, which commits too


def test_a_lock_wait_of_the_full_setting_ends_as_a_lock_conflict() -> None:
    user = Customer(quota=1)
    lock = RowLock()
    with app_engine_under(DB_LOCK_WAIT_TIMEOUT_S=str(LOCK_WAIT_S)):
        lock.take(select(users.c.id).where(users.c.id == user.id))
        try:
            with (
                capture_logs() as logs,
                pytest.raises(OperationalError) as failed,
                transaction() as tx,
            ):
                tx.execute(update(users).where(users.c.id == user.id).values(nickname=None))
        finally:
            lock.release()
    assert lock_conflict_code(failed.value) == 1205
    assert not failed.value.connection_invalidated  # kept: nothing was lost
    assert not logs.where(message="db connection lost")


@pytest.mark.slow  # the migration lock held past the timeout (7 s)
@pytest.mark.parametrize("run", [migrate.reported, migrate.upgrade], ids=["db-migrate", "local"])
def test_a_migration_waits_for_its_answers_past_the_timeout(run: Callable[[], object]) -> None:
    """A migration's statements are never cut, db-migrate's (`reported`) or the local
    cloud's and the tests' (`upgrade` with no engine): here its named lock, held by another
    run for longer than the app's engine would wait for an answer (an ALTER of a big table
    is another such wait)."""
    with app_engine_under(DB_LOCK_WAIT_TIMEOUT_S=str(LOCK_WAIT_S)) as engine:
        name = migrate.lock_name(engine)
        outcome: list[object] = []
        with engine.connect() as holder:
            assert holder.execute(text("SELECT GET_LOCK(:n, 0)"), {"n": name}).scalar() == 1
            runner = threading.Thread(target=lambda: outcome.append(_outcome(run)))
            runner.start()
            try:
                time.sleep(answer_timeout_s(LOCK_WAIT_S) + 1)
            finally:
                holder.execute(text("SELECT RELEASE_LOCK(:n)"), {"n": name})
                runner.join()
        head = migrate.current_heads(engine)[0]
    assert outcome == [{"from": head, "to": head}]


def _outcome(run: Callable[[], object]) -> object:
    try:
        return run()
    except Exception as error:
        return error
