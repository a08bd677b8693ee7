"""Users: creation, lookups, profile and admin changes of `users` rows.

The `User` clients see and its cache are `app.profiles`'; every change committed here drops
the cached profile after its commit (`tx.after_commit(profiles.forgetter(user_id))`).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import false, select, update

from app import profiles
from app.audit import Actor, trail
from app.clock import utcnow
from app.config import get_settings
from app.db import pages
from app.db.tables import users
from app.db.transaction import Transaction, transaction
from app.errors import AppError, ErrorCode
from app.identity import invites, phones, sessions
from app.ids import is_id, new_id
from app.profiles import User
from app.quota.service import grant

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


# What requests are authorized by: a change of these holds the cached profile across its
# commit (profiles.hold), so no stale entry can hide it.
ACCESS_FIELDS = frozenset({"role", "disabled"})


def _change(
    user_id: str, values: dict[str, Any], *, lock: bool = False, actor: Actor | None = None
) -> None:
    """Write `values` (none, or none the user does not already have: only check the user
    exists); the cached profile is dropped after the commit, and held across it for a
    change of role or state. An admin's change (`actor`) is recorded with what each field
    was before, in the same transaction."""
    with transaction() as tx:
        # Locked with the user's row, all in the order of their ids, so that changes of
        # several admins at once queue here instead of deadlocking.
        admins = _enabled_admins(tx, user_id) if _may_end_an_admin(values) else None
        row = get(tx, user_id, for_update=lock)
        if row is None:
            raise AppError(ErrorCode.NOT_FOUND, "User not found.")
        if admins is not None and admins == [user_id] and _ends_admin(row, values):
            raise AppError(
                ErrorCode.FORBIDDEN,
                "The last admin cannot be demoted or disabled; make another admin first.",
            )
        before = {name: row[name] for name in values}
        # Values the user already has (their own role, the state they are in, the nickname
        # they show) change nothing: no write, no record an admin must answer for, and the
        # cached profile stays, as true as before.
        if before != values:
            tx.execute(
                update(users).where(users.c.id == user_id).values(**values, updated_at=utcnow())
            )
            if actor is not None:
                trail.record(tx, actor, "user.change", user_id, {"before": before, "after": values})
            if ACCESS_FIELDS & values.keys():
                profiles.hold(tx, user_id)
            else:
                tx.after_commit(profiles.forgetter(user_id), user_id=user_id)


def _is_disabled(user_id: str) -> bool:
    with transaction() as tx:
        row = get(tx, user_id)
    return row is not None and bool(row["disabled"])


def _may_end_an_admin(values: dict[str, Any]) -> bool:
    return values.get("role", "admin") != "admin" or bool(values.get("disabled"))


def _ends_admin(row: dict[str, Any], values: dict[str, Any]) -> bool:
    """The row is an admin who can act, and would no longer be one after `values`."""
    if row["role"] != "admin" or row["disabled"]:
        return False
    return _may_end_an_admin(values)


def _enabled_admins(tx: Transaction, user_id: str) -> list[str]:
    """The ids of the admins who can act, their rows locked until the commit: the system is
    never left without one (a last admin disabled, or two demoting each other at once,
    could only be undone in the database; ADMIN_PHONES promotes, it never enables).

    The changed user's row is locked in the same statement, in its place in the id order:
    locked after the admins, it deadlocked with a change that found it an admin (made one
    after this change's scan passed it), which held it and waited for a later admin.

    The admins are found first by a read that locks nothing (ix_users_role_disabled), then
    only their rows and the user's are locked, by id, and counted as they are once locked.
    One locking statement over both conditions either scanned the table, waiting for every
    user's row another transaction held (a quota reserve), or merged the two indexes and
    locked the user's row last. An admin made between the two reads is not counted, as one
    made after the scan passed it was not: the change may be refused, never let through."""
    enabled = (users.c.role == "admin") & (users.c.disabled == false())
    found = tx.execute(select(users.c.id).where(enabled)).scalars()
    query = (
        select(users.c.id, enabled.label("enabled_admin"))
        .where(users.c.id.in_(sorted({*found, user_id})))
        .order_by(users.c.id)
        .with_for_update()
    )
    return [str(row.id) for row in tx.execute(query) if row.enabled_admin]


PROFILE_FIELDS = frozenset({"nickname", "avatar", "gender"})


def update_profile(user_id: str, changes: dict[str, Any]) -> User:
    """Set the given profile fields (nickname, avatar, gender; None clears the first two)."""
    unknown = set(changes) - PROFILE_FIELDS
    if unknown:
        raise ValueError(f"not profile fields: {sorted(unknown)}")
    _change(user_id, changes)
    return profiles.cached(user_id)


def admin_change(
    user_id: str, *, actor: Actor, role: str | None = None, disabled: bool | None = None
) -> User:
    """Role and disabled flag, changed by `actor` (recorded: app.audit; a request that
    changes no field records nothing). Disabling ends every session, and enabling revives none.
    A change that would leave no admin able to act (the last one demoted or disabled, by
    another or by themselves) is `403 FORBIDDEN` and changes nothing. An id of another shape
    than ids are made in is `404`: the database ignores trailing spaces when it compares, the
    sessions' and cached profile's keys do not (`<id> ` disabled the row, ended no session,
    left the profile cached as enabled and slipped past the last-admin check)."""
    if not is_id(user_id):
        raise AppError(ErrorCode.NOT_FOUND, "User not found.")
    values: dict[str, Any] = {}
    if role is not None:
        values["role"] = role
    if disabled is not None:
        values["disabled"] = disabled
    # The change shows at the user's next request whatever happens next (the profile is held
    # across the commit). Ending the sessions is not an after-commit effect because its
    # failure must reach the admin; a disabled account is refused meanwhile all the same.
    if disabled is False and _is_disabled(user_id):
        # Every session a disabled account still has is one that should have ended: a
        # disable whose instance died (or whose Redis failed) after its commit left those it
        # meant to end, and a sign-in that died between starting its session and reading the
        # flag again left its own. They are ended before the enable commits, so enabling
        # revives none.
        sessions.end_all(user_id)
    _change(user_id, values, lock=True, actor=actor)
    if disabled:
        sessions.end_all(user_id)
    return profiles.cached(user_id)


# ---------------------------------------------------------------- admin listing


def admin_list(*, phone: str | None, limit: int, cursor: str | None) -> pages.Page[User]:
    """Newest first; `phone` matches exactly."""
    query = select(users)
    if phone is not None:
        query = query.where(users.c.phone == phone)
    query = pages.newest_first(query, users.c.created_at, users.c.id, cursor=cursor, limit=limit)
    with transaction() as tx:
        rows = [dict(r) for r in tx.execute(query).mappings()]
    page, next_cursor = pages.split(rows, limit)
    return pages.Page([profiles.user_of_row(r) for r in page], next_cursor)
