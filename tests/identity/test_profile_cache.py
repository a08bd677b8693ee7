"""The profile cache: public_user is served from Redis and never outlives a change."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import update

from app.clock import utcnow
from app.db.tables import users
from app.db.transaction import transaction
from app.identity import users as users_service


def _new_user(phone: str | None = None) -> str:
    with transaction() as conn:
        return str(users_service.create(conn, phone=phone)["id"])


def test_public_user_shape_and_fresh_role_after_forget(clean_redis):
    user_id = _new_user("+8613900000001")
    first = users_service.public_user(user_id)
    assert first.phone == "+8613900000001"
    assert first.quota.balance == 0 and first.membership is None
    assert first.invite_code and len(first.invite_code) == 8
    assert first.created_at.endswith("Z")

    # A change behind the cache's back is invisible until forget_cached... (role, not quota:
    # quota only changes through the ledger, which forgets the cache itself)
    with transaction() as conn:
        conn.execute(update(users).where(users.c.id == user_id).values(role="admin"))
    assert users_service.public_user(user_id).role == "user"
    # ...and visible right after it.
    users_service.forget_cached(user_id)
    assert users_service.public_user(user_id).role == "admin"


def test_quota_changes_show_at_once(clean_redis):
    from app.quota import service as quota

    user_id = _new_user()
    assert users_service.public_user(user_id).quota.balance == 0
    quota.grant(user_id, 7, kind="admin", reason="test")
    assert users_service.public_user(user_id).quota.balance == 7


def test_membership_shows_only_while_it_lasts(clean_redis):
    user_id = _new_user()
    soon = utcnow() + timedelta(days=30)
    with transaction() as conn:
        conn.execute(update(users).where(users.c.id == user_id).values(membership_expires_at=soon))
    users_service.forget_cached(user_id)
    membership = users_service.public_user(user_id).membership
    assert membership is not None and membership.plan_id is None
    assert membership.expires_at.endswith("Z")

    past = utcnow() - timedelta(seconds=1)
    with transaction() as conn:
        conn.execute(update(users).where(users.c.id == user_id).values(membership_expires_at=past))
    users_service.forget_cached(user_id)
    assert users_service.public_user(user_id).membership is None


def test_unknown_user_is_not_found(clean_redis):
    import pytest

    from app.errors import AppError, ErrorCode

    with pytest.raises(AppError) as caught:
        users_service.public_user("no-such-user")
    assert caught.value.code is ErrorCode.NOT_FOUND
