"""What the engine and the migration runner must never do: leak parameters, run unlocked."""

from __future__ import annotations

import pytest
from sqlalchemy import exc, insert, text

from app.clock import utcnow
from app.db import migrate
from app.db.engine import get_engine
from app.db.tables import users
from app.db.transaction import transaction
from app.ids import new_id


def test_a_failed_statement_does_not_carry_its_parameters() -> None:
    user_id, now = new_id(), utcnow()
    row = {"id": user_id, "created_at": now, "updated_at": now}
    secret = "$2b$12$" + "s" * 53  # a password hash must never reach a log line
    with transaction() as conn:
        conn.execute(insert(users).values(**row))
    with pytest.raises(exc.IntegrityError) as caught, transaction() as conn:
        conn.execute(insert(users).values(**row, password_hash=secret))
    assert secret not in str(caught.value)
    assert "hidden due to hide_parameters" in str(caught.value)


def test_migrations_refuse_to_run_without_the_lock() -> None:
    engine = get_engine()
    with engine.connect() as holder:
        name = migrate.lock_name(engine)
        assert name.startswith("app_migrate:test_")  # the database's own lock
        assert holder.execute(text("SELECT GET_LOCK(:n, 0)"), {"n": name}).scalar() == 1
        try:
            with pytest.raises(RuntimeError, match="holds the lock"):
                migrate.upgrade(engine, lock_timeout_s=1)
        finally:
            holder.execute(text("SELECT RELEASE_LOCK(:n)"), {"n": name})
    assert migrate.upgrade(engine)["to"] == migrate.current_heads(engine)[0]
