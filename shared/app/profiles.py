"""The cached profile of each user (`user:profile:v2:<id>`, one hour) and the `User` it shows.

Several domains change what a profile shows: identity the role, state and profile fields,
quota the counters, payments the membership. So the profile lives here, below all of them:
whoever commits a change of a user row drops the entry after the commit,

    tx.after_commit(profiles.forgetter(user_id))

and `app.cache` never lets a load that started before the drop store what it read, so
`GET /users/me` shows current quota, role and membership without reading the database on a
hit. Membership is derived from the cached expiry at read time, so it lapses on the second.
The database is read only on a miss (and imported only then: a cache hit is the whole cold
start of `GET /users/me`).

The profile is also what every request is authorized by (`app.identity.access`): its role
and whether the account is disabled. A change of either must show at the next request and
never be hidden by a stale entry, so it holds the entry across its commit instead,

    profiles.hold(tx, user_id)      # last thing before the commit; refused if Redis fails

(`app.cache.Cache.hold`). The entry's name carries `v2` since it holds `disabled`: entries of
the earlier shape, without it, are never read.

During a deploy the release before and the next one share the entry, each storing it as it
reads it. An entry without every field this release keeps (stored by a release that kept
fewer) is read as a miss: the database answers and the entry is left to its TTL, never
overwritten under a change's `hold`. So a field added to the profile needs no new name, and
the name a change's `forget` drops stays the one both releases read.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from app import cache
from app.clock import iso, utcnow
from app.errors import AppError, ErrorCode

if TYPE_CHECKING:
    from app.db.transaction import Transaction

TTL_S = 3600
Gender = Literal["unknown", "male", "female"]
Role = Literal["user", "admin"]
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
    "membership_plan_id",
    "created_at",
    "disabled",
)


@dataclass(frozen=True)
class User:
    """A user as clients see it. No field for a password hash, a code or a WeChat key."""

    id: str
    phone: str | None
    nickname: str | None
    avatar: str | None
    gender: Gender
    role: Role
    invite_code: str | None
    referrer_id: str | None
    quota_balance: int
    quota_reserved: int
    # Both None once it has lapsed.
    membership_expires_at: str | None
    membership_plan_id: str | None
    created_at: str


def key(user_id: str) -> str:
    return f"user:profile:v2:{user_id}"


def forget(user_id: str) -> None:
    """Drop the cached profile (a Redis failure is logged by the cache, never raised)."""
    cache.invalidate(key(user_id))


def forgetter(user_id: str) -> Callable[[], None]:
    """`forget(user_id)` as an after-commit effect."""

    def forget_profile() -> None:
        forget(user_id)

    return forget_profile


def hold(tx: Transaction, user_id: str) -> None:
    """For a change of the user's role or state: hold the cached profile across `tx`'s
    commit and drop it after, so the next request is authorized by the change even if
    Redis fails once the commit is made. Raises when Redis cannot answer now: the
    transaction then rolls back and the change is refused (`503`), never made and hidden."""
    held = cache.hold(key(user_id))

    def release_profile() -> None:
        cache.release(key(user_id), held)

    tx.after_commit(release_profile, user_id=user_id)


def of_row(row: Mapping[Any, Any]) -> dict[str, Any]:
    """The JSON-safe part of a `users` row that the profile keeps."""
    data = {name: row[name] for name in _CACHED_FIELDS}
    data["membership_expires_at"] = iso(row["membership_expires_at"])
    data["created_at"] = iso(row["created_at"])
    data["disabled"] = bool(row["disabled"])
    return data


def user(profile: Mapping[str, Any]) -> User:
    expires = profile["membership_expires_at"]
    # Profiles cached before memberships had a plan have no entry for it.
    plan_id = profile.get("membership_plan_id")
    if expires and datetime.fromisoformat(expires.replace("Z", "+00:00")) <= utcnow():
        expires = plan_id = None
    return User(
        id=profile["id"],
        phone=profile["phone"],
        nickname=profile["nickname"],
        avatar=profile["avatar"],
        gender=profile["gender"] or "unknown",
        role=profile["role"],
        invite_code=profile["invite_code"],
        referrer_id=profile["referrer_id"],
        quota_balance=int(profile["quota_balance"]),
        quota_reserved=int(profile["quota_reserved"]),
        membership_expires_at=expires,
        membership_plan_id=plan_id if expires else None,
        created_at=profile["created_at"],
    )


def user_of_row(row: Mapping[Any, Any]) -> User:
    """The `User` of a row just read inside a transaction."""
    return user(of_row(row))


def cached(user_id: str) -> User:
    """The user, from the cache when it holds the profile; `404 NOT_FOUND` for no user."""
    profile = load(user_id)
    if profile is None:
        raise AppError(ErrorCode.NOT_FOUND, "User not found.")
    return user(profile)


def load(user_id: str) -> dict[str, Any] | None:
    """The user's profile through the cache (loaded and stored on a miss); None: no user."""
    profile = cache.get_or_set(key(user_id), lambda: _load(user_id), TTL_S)
    return profile if complete(profile) else _load(user_id)


def complete(profile: Any) -> bool:
    """Whether a cached profile (None: a remembered miss) holds every field this release
    keeps: one stored by a release that kept fewer is read as a miss."""
    return profile is None or (
        isinstance(profile, Mapping) and all(name in profile for name in _CACHED_FIELDS)
    )


def _load(user_id: str) -> dict[str, Any] | None:
    from sqlalchemy import select  # cold start: the database only on a cache miss

    from app.db.tables import users  # cold start: the database only on a cache miss
    from app.db.transaction import transaction  # cold start: the database only on a miss

    with transaction() as tx:
        row = tx.execute(select(users).where(users.c.id == user_id)).mappings().first()
    return None if row is None else of_row(row)
