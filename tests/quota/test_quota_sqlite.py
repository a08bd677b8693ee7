"""The embedded default (`make run`) keeps its quota on SQLite: the same saga runs there, with
SQLite's INSERT OR IGNORE and its Core transaction in place of the driver transaction."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from app.db import migrate
from app.db.engine import get_engine
from app.quota import cancel, confirm, reserve
from tests.support.quota import assert_ledger_consistent, counters, new_user
from tests.support.settings import app_engine_under


@pytest.fixture
def on_sqlite(tmp_path: Path) -> Iterator[None]:
    with app_engine_under(DATABASE_URL=f"sqlite:///{tmp_path / 'app.db'}") as engine:
        migrate.upgrade(engine)
        yield
        assert_ledger_consistent()


def test_the_saga_runs_on_the_embedded_default(on_sqlite: None) -> None:
    assert get_engine().dialect.name == "sqlite"
    user = new_user(10)

    assert reserve(user, "t1", 4).created is True
    assert reserve(user, "t1", 4).created is False  # a repeat charges nothing
    assert reserve(user, "t2", 3).created is True
    assert counters(user) == (3, 7)

    assert confirm("t1").outcome == "confirmed"
    assert cancel("t2").outcome == "cancelled"
    assert cancel("t3").outcome == "tombstone"
    assert counters(user) == (6, 0)
