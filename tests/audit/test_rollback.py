"""A change and its record are one transaction: a rolled back change leaves no row and no
log line, a change whose record cannot be written is not made, and a replayed request,
which changes nothing, records nothing."""

from __future__ import annotations

import pytest
from sqlalchemy import insert, select
from sqlalchemy.exc import DBAPIError, IntegrityError

from app.clock import utcnow
from app.db.tables import quota_ledger, users
from app.db.transaction import transaction
from app.identity import users as user_service
from app.ids import new_id
from app.quota.service import grant
from tests.support.audit import actions_on, an_actor
from tests.support.function_url import call
from tests.support.functions import handler
from tests.support.logs import capture_logs
from tests.support.pipelines import token_for
from tests.support.quota import counters, new_user


def test_a_grant_rolled_back_by_a_later_statement_of_its_transaction_records_nothing() -> None:
    user = new_user(3)
    with capture_logs() as logs, pytest.raises(IntegrityError), transaction() as tx:
        grant(user, 5, kind="admin", reason="rolled back", tx=tx, actor=an_actor())
        # The same transaction then breaks a real constraint: the user's id again.
        now = utcnow()
        tx.execute(insert(users).values(id=user, role="user", created_at=now, updated_at=now))
    assert actions_on(user) == []
    assert counters(user) == (3, 0)
    with transaction() as tx:
        reasons = tx.execute(
            select(quota_ledger.c.reason).where(quota_ledger.c.user_id == user)
        ).scalars()
        assert list(reasons) == ["test funding"]
    assert logs.where(logger="app.audit") == []


def test_a_change_whose_record_cannot_be_written_is_not_made() -> None:
    """The record is written after the change, in its transaction: an actor id longer than
    its column fails the insert (the database's own check), and the role stays as it was."""
    user = new_user()
    with capture_logs() as logs, pytest.raises(DBAPIError):
        user_service.admin_change(user, actor=an_actor("x" * 40), role="admin")
    with transaction() as tx:
        role = tx.execute(select(users.c.role).where(users.c.id == user)).scalar_one()
    assert role == "user"
    assert actions_on(user) == []
    assert logs.where(logger="app.audit") == []


def test_the_last_admin_refused_records_nothing() -> None:
    admin = new_user(role="admin")
    with transaction() as tx:  # the only admin who can act, as far as this test goes
        tx.execute(
            users.update().where(users.c.role == "admin", users.c.id != admin).values(role="user")
        )
    reply = call(
        handler("admin-users-id"),
        "PATCH",
        f"/admin/users/{admin}",
        body={"disabled": True},
        token=token_for(admin),
    )
    assert (reply.status, reply.json()["code"]) == (403, "FORBIDDEN")
    assert actions_on(admin) == []


def test_a_replayed_grant_records_nothing_and_a_mismatched_one_neither() -> None:
    admin, user, key = new_user(role="admin"), new_user(), new_id()
    token = token_for(admin)

    def adjust(delta: int) -> int:
        return call(
            handler("admin-users-id"),
            "POST",
            f"/admin/users/{user}/quota",
            body={"delta": delta, "reason": "gift"},
            headers={"Idempotency-Key": key},
            token=token,
        ).status

    assert [adjust(5), adjust(5), adjust(6)] == [200, 200, 409]
    (row,) = actions_on(user)
    assert row["changes"]["delta"] == 5
