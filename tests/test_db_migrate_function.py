"""The db-migrate function: invoked directly (no trigger), it brings an empty MariaDB
database to the head revision, says so in its result and its log line, and a second
invocation finds nothing to do; a run that fails names its error by class and code, never
the driver's message, which may quote DATABASE_URL."""

from __future__ import annotations

import os
import secrets
import traceback
from collections.abc import Iterator

import pytest
from sqlalchemy import inspect
from sqlalchemy.engine import make_url

from app.db.engine import get_engine
from app.observability import logging as applog
from tests.support.database import scratch_database
from tests.support.function_url import context
from tests.support.functions import handler
from tests.support.logs import capture_logs
from tests.support.net import closed_port
from tests.support.settings import app_engine_under, settings_env


@pytest.fixture
def scratch_url() -> Iterator[str]:
    """A database of its own beside the test run's (tests/conftest.py), dropped after."""
    run_db = make_url(os.environ["DATABASE_URL"])
    server = run_db.set(database="").render_as_string(hide_password=False)
    with scratch_database(server, f"{run_db.database}_migrate") as url:
        yield url


def test_db_migrate_upgrades_an_empty_database_then_finds_nothing_to_do(scratch_url: str) -> None:
    from app.db.migrate import current_heads

    main_handler = handler("db-migrate")
    applog.configure()
    with app_engine_under(DATABASE_URL=scratch_url) as engine:
        with capture_logs() as logs:
            first = main_handler({}, context("db-migrate"))
        second = main_handler({}, context("db-migrate"))
        tables = set(inspect(engine).get_table_names())
        [head] = current_heads(engine)

    assert first == {"from": None, "to": head}
    assert second == {"from": head, "to": head}
    assert {"users", "alembic_version"} <= tables
    assert logs.where(message="migrations applied", to=head)


def test_a_failed_run_names_its_error_without_the_database_url() -> None:
    """A password holding `@` (unescaped, as a console may show it) leaves its tail in the
    host the driver names in its message; SCF would hand that message to the deployer,
    which prints it, and write it with its traceback to the function's log."""
    from app.db.migrate import MigrationFailed

    tail = "Tail9" + secrets.token_hex(4)
    url = f"mysql+pymysql://app:pw-{secrets.token_hex(4)}@{tail}@127.0.0.1:{closed_port()}/app"
    main_handler = handler("db-migrate")
    with (
        app_engine_under(DATABASE_URL=url),
        capture_logs() as logs,
        pytest.raises(MigrationFailed) as failed,
    ):
        main_handler({}, context("db-migrate"))

    assert str(failed.value) == "migrations not applied: OperationalError 2003"
    told = "".join(traceback.format_exception(failed.value)) + logs.text
    assert tail not in told and "pw-" not in told
    assert logs.where(message="migrations failed", error="OperationalError 2003")


def test_make_migrate_names_a_variable_that_does_not_resolve() -> None:
    """`make migrate` reads the settings in the run: a variable that does not resolve is
    named with its reason, as every function's load names it, not as a bare class."""
    from app.config import UnresolvedSecret
    from app.db.migrate import reported

    get_engine().dispose()
    get_engine.cache_clear()
    try:
        with (
            settings_env(JWT_SECRET="enc:v1:not-an-envelope"),
            pytest.raises(UnresolvedSecret) as refused,
        ):
            reported()
    finally:
        get_engine.cache_clear()
    assert "JWT_SECRET: the envelope does not open: " in str(refused.value)
