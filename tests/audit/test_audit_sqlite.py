"""The embedded default (`make run`, SQLite) migrates to the trail's table and records there
as on MariaDB, its JSON read back as written."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import inspect

from app.db import migrate
from app.db.engine import get_engine
from app.payments import plans
from app.quota.service import grant
from tests.support.audit import actions_on, an_actor
from tests.support.quota import new_user
from tests.support.settings import app_engine_under


@pytest.fixture
def on_sqlite(tmp_path: Path) -> Iterator[None]:
    with app_engine_under(DATABASE_URL=f"sqlite:///{tmp_path / 'app.db'}") as engine:
        migrate.upgrade(engine)
        yield


def test_the_trail_is_migrated_and_written_on_the_embedded_default(on_sqlite: None) -> None:
    engine = get_engine()
    assert engine.dialect.name == "sqlite"
    assert "admin_actions" in inspect(engine).get_table_names()

    actor, user = an_actor(), new_user()
    entry = grant(user, 4, kind="admin", reason="welcome", actor=actor).entry
    fields = plans.PlanFields("month", 990, 30, 100, enabled=True)
    plans.save("sqlite-plan", fields, actor=actor)

    (granted,) = actions_on(user)
    assert (granted["actor_id"], granted["action"], granted["request_id"]) == (
        actor.user_id,
        "quota.grant",
        actor.request_id,
    )
    assert granted["changes"] == {
        "delta": 4,
        "balance_after": 4,
        "reason": "welcome",
        "ledger_id": entry.id,
    }
    assert granted["at"].tzinfo is not None
    (saved,) = actions_on("sqlite-plan")
    assert saved["changes"] == {
        "created": True,
        "name": "month",
        "price_fen": 990,
        "duration_days": 30,
        "quota": 100,
        "enabled": True,
    }
