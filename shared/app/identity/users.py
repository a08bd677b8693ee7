"""Users: creation, lookup, the public `User` view and its cache, profile and admin changes.

Owns the cached profile (`user:profile:{id}`, one hour). Every committed change of a user
row is followed by `forget_cached` (here, and in quota and payments); `app.cache` never
lets a load that started before an invalidation store its result, so `GET /users/me` shows
current quota, role and membership without reading the database on a hit. Membership is
derived from the cached expiry at read time, so it lapses on the second.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import select, update

from app import cache, profiles
from app.clock import iso, utcnow
from app.config import get_settings
from app.db import pages
from app.db.tables import users
from app.db.transaction import Transaction, transaction
from app.errors import AppError, ErrorCode
from app.http.models import Page
from app.identity import invites, phones
from app.identity.schemas import (
    AdminUserPatch,
    MembershipOut,
    ProfilePatch,
    QuotaOut,
    UserOut,
)
from app.ids import new_id
from app.observability import logging as applog

log = applog.get_logger("app.identity.users")

_CACHED_FIELDS = (
    "id",
    "phone",
    "nickname",
    "avatar",
    "gender",
    "role",
    "invite_code",
    "referrer_id",
    "quota_balance",
    "quota_reserved",
    "membership_expires_at",
    "created_at",
)


# ---------------------------------------------------------------- the public view


def _profile_of(row: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON-safe part of a row the `User` view is built from."""
    data = {name: row[name] for name in _CACHED_FIELDS}
    data["membership_expires_at"] = iso(row["membership_expires_at"])
    data["created_at"] = iso(row["created_at"])
    return data


def _view(profile: Mapping[str, Any]) -> UserOut:
    expires = profile["membership_expires_at"]
    membership = None
    if expires and datetime.fromisoformat(expires.replace("Z", "+00:00")) > utcnow():
        # plan_id joins this view when orders record which plan a membership came from.
        membership = MembershipOut(plan_id=None, expires_at=expires)
    return UserOut(
        id=profile["id"],
        phone=profile["phone"],
        nickname=profile["nickname"],
        avatar=profile["avatar"],
        gender=profile["gender"] or "unknown",
        role=profile["role"],
        invite_code=profile["invite_code"],
        referrer_id=profile["referrer_id"],
        quota=QuotaOut(balance=profile["quota_balance"], reserved=profile["quota_reserved"]),
        membership=membership,
        created_at=profile["created_at"],
    )


def user_out(row: Mapping[str, Any]) -> UserOut:
    """The `User` view of a row just read inside a transaction."""
    return _view(_profile_of(row))


def _load_profile(user_id: str) -> dict[str, Any] | None:
    with transaction() as conn:
        row = get(conn, user_id)
    return None if row is None else _profile_of(row)


def public_user(user_id: str) -> UserOut:
    """The API `User` of a user: cached for an hour, never older than its last change."""
    profile = cache.get_or_set(
        profiles.key(user_id), lambda: _load_profile(user_id), profiles.TTL_S
    )
    if profile is None:
        raise AppError(ErrorCode.NOT_FOUND, "User not found.")
    return _view(profile)


def forget_cached(user_id: str) -> None:
    """Drop the cached profile. Call after the change is committed."""
    profiles.forget(user_id)


# ---------------------------------------------------------------- lookups


def get(conn: Transaction, user_id: str, *, for_update: bool = False) -> dict[str, Any] | None:
    query = select(users).where(users.c.id == user_id)
    if for_update:
        query = query.with_for_update()
    row = conn.execute(query).mappings().first()
    return dict(row) if row else None


def find_by_phone(conn: Transaction, phone: str) -> dict[str, Any] | None:
    row = conn.execute(select(users).where(users.c.phone == phone)).mappings().first()
    return dict(row) if row else None


def find_by_openid(conn: Transaction, openid: str) -> dict[str, Any] | None:
    row = conn.execute(select(users).where(users.c.wechat_openid == openid)).mappings().first()
    return dict(row) if row else None


def find_by_invite_code(conn: Transaction, code: str) -> dict[str, Any] | None:
    row = conn.execute(select(users).where(users.c.invite_code == code)).mappings().first()
    return dict(row) if row else None


def phone_registered(phone: str) -> bool:
    with transaction() as conn:
        return find_by_phone(conn, phone) is not None


# ---------------------------------------------------------------- creation


def resolve_referrer(
    conn: Transaction,
    *,
    referrer_id: str | None,
    invite_code: str | None,
    registering_phone: str | None = None,
) -> str | None:
    """The referring user's id, or REFERRER_INVALID. Both given must name the same user."""
    if referrer_id is None and invite_code is None:
        return None
    found: list[dict[str, Any] | None] = []
    if referrer_id is not None:
        found.append(get(conn, referrer_id))
    if invite_code is not None:
        found.append(find_by_invite_code(conn, invite_code))
    ids = {row["id"] if row else None for row in found}
    row = found[0]
    if (
        len(ids) != 1
        or row is None
        or row["disabled"]
        or (registering_phone is not None and row["phone"] == registering_phone)
    ):
        raise AppError(ErrorCode.REFERRER_INVALID, "The referrer or invite code is not valid.")
    return str(row["id"])


def is_admin_phone(phone: str | None) -> bool:
    return phone is not None and phone in phones.admin_phones(get_settings().admin_phones)


def create(
    conn: Transaction,
    *,
    phone: str | None = None,
    password_hash: str | None = None,
    openid: str | None = None,
    unionid: str | None = None,
    nickname: str | None = None,
    avatar: str | None = None,
    referrer_id: str | None = None,
) -> dict[str, Any]:
    """Insert a user in the caller's transaction, with an invite code and the signup quota.

    A concurrent insert of the same phone or openid fails this one with the database's
    IntegrityError; the caller decides what that means.
    """
    settings = get_settings()
    user_id = new_id()
    now = utcnow()
    code = invites.claim(conn, user_id)
    conn.execute(
        users.insert().values(
            id=user_id,
            phone=phone,
            role="admin" if is_admin_phone(phone) else "user",
            invite_code=code,
            referrer_id=referrer_id,
            disabled=False,
            created_at=now,
            updated_at=now,
            password_hash=password_hash,
            wechat_openid=openid,
            wechat_unionid=unionid,
            nickname=nickname,
            avatar=avatar,
            gender="unknown",
            quota_balance=0,
            quota_reserved=0,
        )
    )
    if settings.signup_quota > 0:
        # The ledger explains every balance, the starting one included.
        from app.quota.service import grant

        grant(
            user_id,
            settings.signup_quota,
            kind="signup",
            reason="signup",
            ref=f"signup:{user_id}",
            tx=conn,
        )
    row = get(conn, user_id)
    assert row is not None
    return row


def promote_if_admin_phone(conn: Transaction, row: dict[str, Any]) -> dict[str, Any]:
    """ADMIN_PHONES holds at every sign-in: a listed phone gains the admin role."""
    if row["role"] != "admin" and is_admin_phone(row["phone"]):
        conn.execute(
            update(users).where(users.c.id == row["id"]).values(role="admin", updated_at=utcnow())
        )
        row = {**row, "role": "admin"}
    return row


def fill_empty(conn: Transaction, user_id: str, **fields: str | None) -> bool:
    """Set each given field only where it is still NULL; True when any was given.

    The condition is in the UPDATE, so the database decides: of concurrent sign-ins
    filling the same field, the first one's value holds and the others change nothing.
    """
    given = {name: value for name, value in fields.items() if value is not None}
    for name, value in given.items():
        conn.execute(
            update(users)
            .where(users.c.id == user_id, users.c[name].is_(None))
            .values({name: value, "updated_at": utcnow()})
        )
    return bool(given)


# ---------------------------------------------------------------- changes


def _change(user_id: str, values: dict[str, Any], *, lock: bool = False) -> None:
    """Write `values` (none: only check the user exists), then drop the cached profile."""
    with transaction() as conn:
        if get(conn, user_id, for_update=lock) is None:
            raise AppError(ErrorCode.NOT_FOUND, "User not found.")
        if values:
            conn.execute(
                update(users).where(users.c.id == user_id).values(**values, updated_at=utcnow())
            )
    if values:
        forget_cached(user_id)


def update_profile(user_id: str, patch: ProfilePatch) -> UserOut:
    _change(user_id, {name: getattr(patch, name) for name in patch.model_fields_set})
    return public_user(user_id)


def admin_patch(user_id: str, patch: AdminUserPatch) -> UserOut:
    """Role and disabled flag. Disabling ends every session; access tokens run out alone."""
    values: dict[str, Any] = {}
    if patch.role is not None:
        values["role"] = patch.role
    if patch.disabled is not None:
        values["disabled"] = patch.disabled
    # The cache goes first: the change is committed, so a failure to end the sessions must
    # not leave the old role or flag cached for an hour.
    _change(user_id, values, lock=True)
    if patch.disabled:
        from app.identity import sessions

        sessions.end_all(user_id)
    return public_user(user_id)


# ---------------------------------------------------------------- admin listing


def admin_list(*, phone: str | None, limit: int, cursor: str | None) -> Page[UserOut]:
    """Newest first; `phone` matches exactly."""
    query = select(users)
    if phone is not None:
        query = query.where(users.c.phone == phone)
    query = pages.newest_first(query, users.c.created_at, users.c.id, cursor=cursor, limit=limit)
    with transaction() as conn:
        rows = [dict(r) for r in conn.execute(query).mappings()]
    page, next_cursor = pages.split(rows, limit)
    return Page[UserOut](items=[user_out(r) for r in page], next_cursor=next_cursor)
