"""The connection pool against the real MariaDB: the cap and the acquire timeout, SELECT 1
checks, idle retirement, warming, failures that never show the password, /health and
/metrics."""

from __future__ import annotations

import os
import re
import secrets
import threading
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import create_engine, select, text
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.pool import PoolProxiedConnection, QueuePool

from app.config import get_settings
from app.db.engine import build_engine, get_engine
from app.db.pool import PoolMonitor, reap_idle, stats, warm
from app.db.prepared import Prepared
from app.db.tables import users
from app.db.transaction import transaction
from app.errors import AppError, ErrorCode
from app.http import Auth, Request, Router, http_handler
from app.observability.metrics import DB_POOL_TIMEOUTS
from tests.support import log_guard
from tests.support.function_url import call
from tests.support.functions import handler as function_handler
from tests.support.logs import capture_logs
from tests.support.net import closed_port
from tests.support.settings import app_engine_under, redis_down, settings_env

DATABASE_URL = os.environ["DATABASE_URL"]
DB_NAME = make_url(DATABASE_URL).database
PASSWORD = "pw-that-must-never-be-logged-7f3a"
log_guard.remember(PASSWORD)

router = Router(tags=("test",))


@router.get("/db-ping", auth=Auth.PUBLIC)
def db_ping(req: Request[None, None]) -> dict[str, Any]:
    with transaction() as conn:
        return {"one": conn.execute(text("SELECT 1")).scalar()}


handler = http_handler(db_ping)


@contextmanager
def engine_under(**env: str) -> Iterator[Engine]:
    """An engine built under these settings, disposed after."""
    with settings_env(**env):
        engine = build_engine(env.get("DATABASE_URL", DATABASE_URL))
        try:
            yield engine
        finally:
            engine.dispose()


def pool_of(engine: Engine) -> QueuePool:
    assert isinstance(engine.pool, QueuePool)
    return engine.pool


def selects_run(conn: Connection) -> int:
    """SELECT statements this server session has run (SHOW STATUS is not one)."""
    row = conn.exec_driver_sql("SHOW SESSION STATUS LIKE 'Com_select'").one()
    return int(row[1])


def server_thread(conn: Connection) -> int:
    return int(conn.connection.dbapi_connection.thread_id())  # type: ignore[union-attr]


# -- the cap and the acquire timeout --------------------------------------------------


def test_exhausted_pool_is_503_not_a_hang() -> None:
    with app_engine_under(DB_POOL_MAX="1", DB_POOL_ACQUIRE_TIMEOUT_S="0.3") as engine:
        timeouts_before = DB_POOL_TIMEOUTS.value()
        held = engine.connect()
        outcome: list[BaseException | None] = []

        def second_caller() -> None:
            try:
                with transaction() as conn:
                    conn.execute(text("SELECT 1"))
                outcome.append(None)
            except BaseException as exc:
                outcome.append(exc)

        thread = threading.Thread(target=second_caller)
        thread.start()
        thread.join(timeout=30)
        assert not thread.is_alive(), "transaction() hung on an exhausted pool"
        assert isinstance(outcome[0], AppError)
        assert outcome[0].code is ErrorCode.SERVICE_UNAVAILABLE and outcome[0].status == 503

        with capture_logs() as logs:
            reply = call(handler, "GET", "/db-ping")
        assert reply.status == 503
        assert reply.json()["code"] == "SERVICE_UNAVAILABLE"
        exhausted = logs.where(message="db pool exhausted")
        assert exhausted and exhausted[0]["database"] == DB_NAME
        assert exhausted[0]["host"] == "127.0.0.1"
        assert DB_POOL_TIMEOUTS.value() == timeouts_before + 2
        assert stats(engine)["pending"] == 0

        held.close()
        assert call(handler, "GET", "/db-ping").json() == {"one": 1}
        assert stats(engine)["peak"] == 1


# -- SELECT 1 checks ----------------------------------------------------------------------


def test_select_1_on_every_new_connection_and_on_reuse_after_idle() -> None:
    with engine_under(DB_POOL_PING_AFTER_IDLE_S="1", DB_POOL_IDLE_TIMEOUT_S="30") as engine:
        first = engine.connect()  # the dialect's own first-connect queries land here
        assert selects_run(first) >= 1

        second = engine.connect()
        thread_id = server_thread(second)
        assert selects_run(second) == 1  # the check, and nothing else
        second.close()

        again = engine.connect()  # reused at once (well inside the second): no check
        assert server_thread(again) == thread_id
        assert selects_run(again) == 1
        again.close()

        time.sleep(1.1)
        after_idle = engine.connect()  # reused after an idle spell: checked again
        assert server_thread(after_idle) == thread_id
        assert selects_run(after_idle) == 2
        after_idle.close()
        first.close()


def test_connection_idle_past_the_timeout_is_replaced_on_checkout() -> None:
    with engine_under(DB_POOL_IDLE_TIMEOUT_S="0.3", DB_POOL_MAX="2") as engine:
        conn = engine.connect()
        old_thread = server_thread(conn)
        old_dbapi = conn.connection.dbapi_connection
        conn.close()
        time.sleep(0.5)

        fresh = engine.connect()
        assert server_thread(fresh) != old_thread
        assert old_dbapi.open is False  # type: ignore[union-attr]
        assert selects_run(fresh) == 1  # the new one was checked
        fresh.close()
        found = stats(engine)
        assert found["used"] == 0 and found["free"] == 1


def test_reap_idle_closes_idle_connections_down_to_the_minimum() -> None:
    with engine_under(DB_POOL_MAX="5", DB_POOL_ACQUIRE_TIMEOUT_S="2") as engine:
        pool = pool_of(engine)
        conns = [engine.connect() for _ in range(4)]
        dbapis = [c.connection.dbapi_connection for c in conns]
        for c in conns:
            c.close()
        assert pool.checkedin() == 4

        assert reap_idle(engine, keep=1, idle_timeout_s=60) == 0  # none idle long enough
        assert sum(1 for d in dbapis if d.open) == 4  # type: ignore[union-attr]
        time.sleep(0.3)
        assert reap_idle(engine, keep=1, idle_timeout_s=0.2) == 3
        assert stats(engine)["free"] == 1
        assert sum(1 for d in dbapis if d.open) == 1  # type: ignore[union-attr]
        # The one kept is still known as idle since before: reaped once it is old enough.
        assert reap_idle(engine, keep=0, idle_timeout_s=0.2) == 1

        # The pool can still open up to its max: the closed ones no longer count.
        five = [engine.connect() for _ in range(5)]
        assert pool.checkedout() == 5
        for c in five:
            c.close()


def test_reap_idle_survives_an_idle_connection_taken_before_it_gets_there() -> None:
    """A request may take the last idle connection between the reaper's look at the pool
    and its own checkout: the reaper then finds none and gives back what it holds, instead
    of waiting out the acquire timeout and ending the monitor with its TimeoutError."""
    with engine_under(DB_POOL_MAX="1", DB_POOL_ACQUIRE_TIMEOUT_S="1") as engine:
        pool = pool_of(engine)
        engine.connect().close()
        taken: list[Connection] = []
        looked = pool.checkedin

        def look_then_lose_it() -> int:
            found = looked()
            if found and not taken:  # a request thread gets there first
                grab = threading.Thread(target=lambda: taken.append(engine.connect()))
                grab.start()
                grab.join()
            return found

        pool.checkedin = look_then_lose_it  # type: ignore[method-assign]
        monitor = PoolMonitor(engine, keep=0, idle_timeout_s=0.1, interval=0.05)
        started = time.monotonic()
        monitor.start()
        time.sleep(1.5)
        alive = monitor.is_alive()
        monitor.stop()
        monitor.join(timeout=5)
        assert alive
        taken[0].close()
        del pool.checkedin
        assert time.monotonic() - started < 3
        # The reaper still works once the connection is back.
        time.sleep(0.2)
        assert reap_idle(engine, keep=0, idle_timeout_s=0.1) == 1
        assert pool.checkedout() == 0


def test_pool_monitor_reaps_logs_and_exports() -> None:
    with engine_under(DB_POOL_MAX="4") as engine:
        for c in [engine.connect() for _ in range(3)]:
            c.close()
        held = engine.connect()
        time.sleep(0.2)
        monitor = PoolMonitor(engine, keep=1, idle_timeout_s=0.1, interval=0.05)
        with capture_logs() as logs:
            found = monitor.tick()
        assert found["used"] == 1 and found["free"] == 1 and found["pending"] == 0
        line = logs.where(message="db pool")[0]
        assert (line["used"], line["free"], line["pending"], line["closed_idle"]) == (1, 1, 0, 1)

        metrics = call(function_handler("metrics"), "GET", "/metrics").body
        # /metrics reads the instance's own pool, which is not this engine's; the monitor
        # exported this one's numbers until then.
        assert "db_pool_connections_used" in metrics
        monitor.start()
        time.sleep(0.2)
        monitor.stop()
        monitor.join(timeout=5)
        assert not monitor.is_alive()
        held.close()


def test_warm_opens_db_pool_min_connections() -> None:
    with engine_under(DB_POOL_MIN="3", DB_POOL_MAX="5") as engine:
        pool = pool_of(engine)
        assert pool.checkedin() == 0
        warm(engine, get_settings().db_pool_min)
        assert pool.checkedin() == 3 and pool.checkedout() == 0


# -- unreachable databases -------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        f"mysql+pymysql://root:{PASSWORD}@127.0.0.1:3306/{DB_NAME}",
        f"mysql+pymysql://root:{PASSWORD}@127.0.0.1:{closed_port()}/{DB_NAME}",
    ],
    ids=["wrong-password", "dead-port"],
)
def test_connection_failure_is_503_and_logs_host_and_database_never_the_password(
    url: str,
) -> None:
    with capture_logs() as logs, app_engine_under(DATABASE_URL=url):
        with pytest.raises(AppError) as caught, transaction():
            pass
        assert caught.value.code is ErrorCode.SERVICE_UNAVAILABLE
        reply = call(handler, "GET", "/db-ping")
        health = call(function_handler("health"), "GET", "/health")

    assert reply.status == 503 and reply.json()["code"] == "SERVICE_UNAVAILABLE"
    assert health.status == 503
    assert health.json()["status"] == "degraded"
    assert health.json()["checks"]["db"] != "ok" and health.json()["checks"]["redis"] == "ok"

    failures = logs.where(message="db connection failed")
    assert failures
    for line in failures:
        assert line["host"] == "127.0.0.1" and line["database"] == DB_NAME
        assert line["error"]
    everything = logs.text + reply.body + health.body
    assert PASSWORD not in everything


def test_a_password_holding_an_unescaped_at_leaves_no_tail_in_the_log_or_the_error() -> None:
    """The URL parses the password's tail into the host, which the driver names in its
    message: the line gives the host after the last `@` and the error by class and code,
    and the 503 does not carry the driver's error (a failed job logs its traceback)."""
    tail = "Tail9" + secrets.token_hex(4)
    url = f"mysql+pymysql://root:{PASSWORD}@{tail}@127.0.0.1:{closed_port()}/{DB_NAME}"
    with (
        capture_logs() as logs,
        app_engine_under(DATABASE_URL=url),
        pytest.raises(AppError) as caught,
        transaction(),
    ):
        pass

    assert caught.value.code is ErrorCode.SERVICE_UNAVAILABLE
    [line] = logs.where(message="db connection failed")
    assert line["host"] == "127.0.0.1" and line["error"] == "OperationalError 2003"
    told = logs.text + "".join(traceback.format_exception(caught.value))
    assert tail not in told and PASSWORD not in told


@pytest.mark.parametrize(
    ("parted", "error"),
    [("pw:{tail}@", "ValueError"), ("pw?{tail}=1@", "TypeError")],
    ids=["in-the-port", "in-the-query"],
)
def test_a_password_tail_the_url_or_the_driver_quote_is_never_logged(
    parted: str, error: str
) -> None:
    """Past an unescaped `@`, a `:` puts the password's tail in the port (a ValueError
    quoting it when the URL is parsed) and a `?` in the query the driver takes as its
    arguments (a TypeError naming it): a 503 like any connection that fails, named by
    class, never an error of ours carrying the tail in a function's log."""
    tail = "Tail9" + secrets.token_hex(4)
    url = f"mysql+pymysql://root:{PASSWORD}@{parted.format(tail=tail)}127.0.0.1:1/{DB_NAME}"
    get_engine().dispose()
    with settings_env(DATABASE_URL=url):
        get_engine.cache_clear()  # built in the transaction, where this URL fails
        try:
            with capture_logs() as logs, pytest.raises(AppError) as caught, transaction():
                pass
        finally:
            get_engine.cache_clear()

    assert caught.value.code is ErrorCode.SERVICE_UNAVAILABLE
    assert [line["error"] for line in logs.where(message="db connection failed")] == [error]
    told = logs.text + "".join(traceback.format_exception(caught.value))
    assert tail not in told and PASSWORD not in told


def test_health_names_redis_when_redis_is_down() -> None:
    with redis_down():
        reply = call(function_handler("health"), "GET", "/health")
    assert reply.status == 503
    body = reply.json()
    assert body["status"] == "degraded"
    assert body["checks"]["db"] == "ok"
    assert body["checks"]["redis"] not in ("", "ok")
    # And healthy again once Redis answers.
    assert call(function_handler("health"), "GET", "/health").status == 200


# -- /metrics -----------------------------------------------------------------------------


def test_metrics_expose_http_counters_histograms_and_live_pool_gauges() -> None:
    with app_engine_under(DB_POOL_MAX="3"):
        assert call(handler, "GET", "/db-ping").status == 200
        held = get_engine().connect()
        metrics = call(function_handler("metrics"), "GET", "/metrics")
        held.close()
        after = call(function_handler("metrics"), "GET", "/metrics").body

    assert metrics.status == 200
    assert metrics.header("Content-Type").startswith("text/plain")
    text_ = metrics.body
    assert (
        'http_requests_total{function="test",method="GET",route="/db-ping",status="200"}' in text_
    )
    assert (
        'http_request_duration_seconds_bucket{function="test",le="0.005",method="GET",'
        'route="/db-ping"}' in text_
    )
    assert "db_pool_connections_used 1.0" in text_
    assert "db_pool_connections_free" in text_
    assert "db_pool_acquire_pending 0.0" in text_
    assert "db_pool_acquire_timeouts_total" in text_
    assert "db_pool_connections_used 0.0" in after
    assert "db_pool_connections_free 1.0" in after


def test_connection_lost_mid_transaction_is_503_and_the_pool_recovers() -> None:
    with app_engine_under(DB_POOL_MAX="2") as engine:
        killer = engine.connect()
        with capture_logs() as logs, pytest.raises(AppError) as caught, transaction() as conn:
            conn.execute(text("SELECT 1"))
            # The server drops this connection (a restart, a failover, wait_timeout).
            killer.exec_driver_sql(f"KILL CONNECTION {server_thread(conn)}")
            conn.execute(text("SELECT 1"))
        killer.close()
        assert caught.value.code is ErrorCode.SERVICE_UNAVAILABLE
        lost = logs.where(message="db connection lost")
        assert lost and lost[0]["database"] == DB_NAME
        # By class and driver code, as every database error line: the driver's message may
        # quote the server it lost.
        assert re.fullmatch(r"OperationalError \d+", lost[0]["error"]), lost[0]["error"]
        # The dead connection was thrown away; the next request gets a working one.
        assert call(handler, "GET", "/db-ping").json() == {"one": 1}


def test_a_block_that_fails_after_its_connection_was_lost_answers_its_own_error() -> None:
    with app_engine_under(DB_POOL_MAX="2") as engine:
        killer = engine.connect()
        with capture_logs() as logs, pytest.raises(AppError) as caught, transaction() as conn:
            conn.execute(text("SELECT 1"))
            killer.exec_driver_sql(f"KILL CONNECTION {server_thread(conn)}")
            # The block fails on its own account before it touches the database again: its
            # rollback finds the connection gone, which must not replace the block's answer.
            raise AppError(ErrorCode.NOT_FOUND, "Task not found.")
        killer.close()
        assert caught.value.code is ErrorCode.NOT_FOUND
        assert logs.where(message="db connection lost")
        assert call(handler, "GET", "/db-ping").json() == {"one": 1}


# -- a server restart: every pooled connection died at once ---------------------------

USER_IDS = Prepared(select(users.c.id).limit(1))  # the saga's path: the driver's cursor


def kill_server_sessions(*threads: int) -> None:
    """What a restart does to these connections, from a session outside the pool."""
    killer = create_engine(DATABASE_URL)
    try:
        with killer.connect() as conn:
            for thread in threads:
                conn.exec_driver_sql(f"KILL CONNECTION {thread}")
    finally:
        killer.dispose()


def raw_thread(conn: PoolProxiedConnection) -> int:
    return int(conn.dbapi_connection.thread_id())  # type: ignore[union-attr]


def test_after_a_statement_finds_its_connection_lost_no_older_connection_is_handed_out() -> None:
    with app_engine_under(DB_POOL_MAX="3") as engine:
        held = [engine.raw_connection() for _ in range(3)]
        threads = [raw_thread(conn) for conn in held]
        for conn in held:
            conn.close()
        kill_server_sessions(*threads)

        # The first one used finds out (used a moment ago, it is not checked first)...
        with pytest.raises(AppError) as caught, transaction() as tx:
            USER_IDS.run(tx, {})
        assert caught.value.code is ErrorCode.SERVICE_UNAVAILABLE

        # ...and then no connection opened before it is handed out, whichever path ran.
        busy = engine.raw_connection()
        try:
            with transaction() as tx:
                assert raw_thread(tx.connection) not in threads
                USER_IDS.run(tx, {})
        finally:
            busy.close()


def test_a_connection_lost_before_an_isolated_transaction_begins_is_503_and_not_reused() -> None:
    with app_engine_under(DB_POOL_MAX="2"):
        with transaction() as tx:
            USER_IDS.run(tx, {})
            thread = raw_thread(tx.connection)
        kill_server_sessions(thread)

        # The level is set on the connection before the transaction begins: that statement
        # is the first to find it gone.
        with pytest.raises(AppError) as caught, transaction(isolation="REPEATABLE READ"):
            pytest.fail("the block ran on a lost connection")
        assert caught.value.code is ErrorCode.SERVICE_UNAVAILABLE

        with transaction(isolation="REPEATABLE READ") as tx:
            assert raw_thread(tx.connection) != thread
            assert tx.execute(text("SELECT 1")).scalar() == 1
