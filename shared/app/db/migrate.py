"""Run the Alembic migrations shipped in the layer (app/db/migrations/versions).

Used by the `db-migrate` function, `make migrate`, the local cloud at start and the tests.
On MySQL a named lock keeps two concurrent runs (two instances, a deploy racing a start)
from stepping on each other. Unless given one, a run makes an engine of its own that waits
for every answer as long as it takes (an ALTER of a big table may run minutes, the lock
waits up to 120 s for another run): the app's cuts a statement off once it is past
DB_LOCK_WAIT_TIMEOUT_S and a few seconds (app.db.engine). The function, `make migrate`, the
local cloud and the tests' databases all migrate so.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import Engine

from app.config import ProductionMisconfigured, get_settings
from app.crypto.resolution import describe_database_error
from app.db.engine import build_engine
from app.observability import logging as applog

log = applog.get_logger("app.db.migrate")
MIGRATIONS = Path(__file__).parent / "migrations"
LOCKED = "another migration run holds the lock; try again later"


class MigrationFailed(RuntimeError):
    """A run that did not complete, named without the driver's message: it may quote
    DATABASE_URL (a password holding `@` leaves its tail in the host the driver names)."""


def _config(connection: Any) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option(
        "file_template",
        "%%(year)d%%(month).2d%%(day).2d%%(hour).2d%%(minute).2d%%(second).2d_%%(slug)s",
    )
    config.attributes["connection"] = connection
    return config


def current_heads(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return list(ScriptDirectory.from_config(_config(conn)).get_heads())


def lock_name(engine: Engine) -> str:
    """The named lock migration runs on this engine's database take (MySQL allows 64 chars)."""
    return f"app_migrate:{engine.url.database or ''}"[:64]


def upgrade(
    engine: Engine | None = None, revision: str = "head", *, lock_timeout_s: int = 120
) -> dict[str, Any]:
    """Bring the database to `revision` under the migration lock; on `engine` when given (a
    test's SQLite), else on an engine of its own, closed after, whose statements are never
    cut off (see the module docstring)."""
    if engine is None:
        own = build_engine(long_statements=True)
        try:
            return upgrade(own, revision, lock_timeout_s=lock_timeout_s)
        finally:
            own.dispose()
    with engine.connect() as conn:
        locked = conn.dialect.name == "mysql"
        # Named locks are server-wide: the name carries the database, so two databases on
        # one server (stages, test runs) migrate independently.
        name = lock_name(engine)
        lock = text("SELECT GET_LOCK(:name, :wait)")
        if locked and conn.execute(lock, {"name": name, "wait": lock_timeout_s}).scalar() != 1:
            raise MigrationFailed(LOCKED)
        try:
            before = MigrationContext.configure(conn).get_current_revision()
            conn.commit()
            command.upgrade(_config(conn), revision)
            conn.commit()
            after = MigrationContext.configure(conn).get_current_revision()
        finally:
            if locked:
                conn.execute(text("SELECT RELEASE_LOCK(:name)"), {"name": name})
                conn.commit()
    report = {"from": before, "to": after}
    applog.log_fields(log, logging.INFO, "migrations applied", **report)
    return report


def reported() -> dict[str, Any]:
    """`upgrade()`, its failure told in words: SCF hands the error's text to the deployer,
    which prints it, and writes it with its traceback to the function's log, so the
    driver's message (which may quote the URL) goes no further than this."""
    try:
        return upgrade()
    except (MigrationFailed, ProductionMisconfigured):
        raise  # their messages name no value: the settings' say which variable and why
    except Exception as error:  # noqa: BLE001 - every failure, named by class and code only
        described = describe_database_error(error)
        applog.log_fields(log, logging.ERROR, "migrations failed", error=described)
        raise MigrationFailed(f"migrations not applied: {described}") from None


def main_handler(event: Any, context: Any) -> dict[str, Any]:
    """SCF entry of the `db-migrate` function, invoked directly after a deploy (no trigger):
    applies pending migrations and returns and logs {"from", "to"}."""
    applog.configure(get_settings().log_level)
    return reported()


if __name__ == "__main__":  # `make migrate`
    import json

    print(json.dumps(reported()))
