"""The profile cache (`app.profiles`): a user is served from Redis and never outlives a
change."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import update

from app import cache, profiles
from app.clock import utcnow
from app.db.tables import users
from app.db.transaction import transaction
from app.errors import AppError, ErrorCode
from app.identity import users as users_service
from app.quota import service as quota
from tests.identity.conftest import new_phone
from tests.support.audit import an_actor


def _new_user(phone: str | None = None) -> str:
    with transaction() as tx:
        return str(users_service.create(tx, phone=phone)["id"])


def test_the_user_shape_and_a_fresh_role_after_forget(clean_redis):
    user_id = _new_user("+8613900000001")
    first = profiles.cached(user_id)
    assert first.phone == "+8613900000001"
    assert first.quota_balance == 0 and first.membership_expires_at is None
    assert first.invite_code and len(first.invite_code) == 8
    assert first.created_at.endswith("Z")

    # A change behind the cache's back is invisible until forget... (role, not quota:
    # quota only changes through the ledger, which drops the profile itself)
    with transaction() as tx:
        tx.execute(update(users).where(users.c.id == user_id).values(role="admin"))
    assert profiles.cached(user_id).role == "user"
    # ...and visible right after it.
    profiles.forget(user_id)
    assert profiles.cached(user_id).role == "admin"


def test_a_change_through_the_service_drops_the_profile_after_its_commit(clean_redis):
    user_id = _new_user()
    assert profiles.cached(user_id).role == "user"
    assert users_service.admin_change(user_id, actor=an_actor(), role="admin").role == "admin"
    assert profiles.cached(user_id).role == "admin"


def test_a_change_to_what_the_user_already_is_writes_nothing_and_keeps_the_profile(
    clean_redis,
):
    user_id = _new_user()
    users_service.update_profile(user_id, {"nickname": "Ada"})
    with transaction() as tx:
        updated_at = users_service.get(tx, user_id)["updated_at"]
    assert profiles.cached(user_id).nickname == "Ada"
    assert clean_redis.exists(cache.redis_key(profiles.key(user_id)))

    users_service.admin_change(user_id, actor=an_actor(), role="user", disabled=False)
    users_service.update_profile(user_id, {"nickname": "Ada"})
    with transaction() as tx:
        assert users_service.get(tx, user_id)["updated_at"] == updated_at
    assert clean_redis.exists(cache.redis_key(profiles.key(user_id)))  # nothing changed: kept


def test_quota_changes_show_at_once(clean_redis):
    user_id = _new_user()
    assert profiles.cached(user_id).quota_balance == 0
    quota.grant(user_id, 7, kind="admin", reason="test")
    assert profiles.cached(user_id).quota_balance == 7


def test_membership_shows_only_while_it_lasts(clean_redis):
    user_id = _new_user()
    soon = utcnow() + timedelta(days=30)
    with transaction() as tx:
        tx.execute(update(users).where(users.c.id == user_id).values(membership_expires_at=soon))
    profiles.forget(user_id)
    expires = profiles.cached(user_id).membership_expires_at
    assert expires is not None and expires.endswith("Z")

    past = utcnow() - timedelta(seconds=1)
    with transaction() as tx:
        tx.execute(update(users).where(users.c.id == user_id).values(membership_expires_at=past))
    profiles.forget(user_id)
    assert profiles.cached(user_id).membership_expires_at is None


def test_unknown_user_is_not_found(clean_redis):
    with pytest.raises(AppError) as caught:
        profiles.cached("no-such-user")
    assert caught.value.code is ErrorCode.NOT_FOUND


def _cache_without(user_id: str, *missing: str) -> None:
    """Store the user's profile as a release that kept fewer fields would have: the entry
    under the same name, without `missing`."""
    profile = profiles.load(user_id)
    assert profile is not None
    kept = {name: value for name, value in profile.items() if name not in missing}
    profiles.forget(user_id)
    assert cache.get_or_set(profiles.key(user_id), lambda: kept, profiles.TTL_S) == kept


@pytest.mark.parametrize("missing", ["role", "quota_balance", "created_at"])
def test_a_profile_cached_without_a_field_this_release_reads_is_a_miss(clean_redis, missing):
    # During a deploy the release before and this one share the entry: a field added to
    # the profile is absent from what the other release stored, for up to the hour it lives.
    phone = new_phone()
    user_id = _new_user(phone)
    with transaction() as tx:
        tx.execute(update(users).where(users.c.id == user_id).values(role="admin"))
    _cache_without(user_id, missing)

    user = profiles.cached(user_id)
    assert user.role == "admin" and user.phone == phone
    assert user.created_at.endswith("Z")


def test_a_request_is_authorized_past_a_profile_cached_without_a_field(clean_redis, flows):
    pair = flows.registered()
    user_id = pair["user"]["id"]
    _cache_without(user_id, "disabled")
    reply = flows.me(pair["access_token"])
    assert reply.status == 200, reply.body
    assert reply.json()["id"] == user_id

    flows.disable(user_id)
    _cache_without(user_id, "role")
    assert flows.me(pair["access_token"]).json()["code"] == "ACCOUNT_DISABLED"
