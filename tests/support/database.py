"""A MariaDB database of its own for a test run, a test or a benchmark: created on the
server, dropped after, whatever happened in between."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import create_engine, text

from tests.support.settings import app_engine_under


@contextmanager
def scratch_database(server_url: str, name: str) -> Iterator[str]:
    """Creates database `name` on the server at `server_url` (no database part) and yields
    its URL; drops it on the way out."""
    server_url = server_url.rstrip("/")
    server = create_engine(server_url + "/", isolation_level="AUTOCOMMIT")
    with server.connect() as conn:
        conn.execute(
            text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
        )
    try:
        yield f"{server_url}/{name}"
    finally:
        with server.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS `{name}`"))
        server.dispose()


@contextmanager
def migrated_database(server_url: str, name: str) -> Iterator[str]:
    """`scratch_database`, brought to the head revision as db-migrate does (on an engine of
    its own), for the app's engine, which DATABASE_URL must already point at; that engine's
    connections are closed before the drop."""
    with scratch_database(server_url, name) as url:
        assert os.environ.get("DATABASE_URL") == url, "DATABASE_URL names another database"
        from app.db import migrate
        from app.db.engine import get_engine

        try:
            migrate.upgrade()
            yield url
        finally:
            get_engine().dispose()


@contextmanager
def a_database_of_its_own(label: str) -> Iterator[None]:
    """A migrated database of the caller's own beside the test run's (`test_app_<label>_...`),
    the app's engine pointed at it until the block ends: the rows a job finds there are the
    caller's alone."""
    server, _, _ = os.environ["DATABASE_URL"].rpartition("/")
    name = f"test_app_{label}_{secrets.token_hex(4)}"
    with app_engine_under(DATABASE_URL=f"{server}/{name}"), migrated_database(server, name):
        yield
