"""Who is calling, as of now: an authenticated request is authorized by the access token's
session, which must still be live, and by the user's current role and state, never by the
role the token was minted with. Logout, logout-all, refresh reuse and disabling end a
session at once; a demotion or a disabling shows at the user's next request.

One pipelined Redis round trip reads both: the session's key (`app.identity.sessions`) and
the user's cached profile (`app.profiles`), which then serves `GET /users/me` as well. On a
profile miss the profile is loaded through the cache. When Redis cannot answer, the
database answers both, in one transaction (`app.identity.ended` and the user's row), and
nothing is stored; that costs each request a database round trip until Redis is back.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from app import cache, profiles
from app.errors import AppError, ErrorCode
from app.identity import sessions, tokens
from app.identity.principal import Principal
from app.observability import logging as applog
from app.redis_client import get_redis, is_redis_error

log = applog.get_logger("app.identity.access")


@dataclass(frozen=True)
class _Standing:
    live: bool  # the session has not ended
    profile: dict[str, Any] | None  # None: no such user


def authorize(access_token: str) -> Principal:
    """The caller of a request bearing `access_token`; AppError when it may not proceed:
    `AUTH_TOKEN_*` for the token itself, `AUTH_SESSION_ENDED` for a session that has ended
    (or a user that is gone), `ACCOUNT_DISABLED` for a disabled account."""
    claims = tokens.decode(access_token, "access")
    user_id, sid = str(claims["sub"]), str(claims["sid"])
    standing = _standing(user_id, sid)
    profile = standing.profile
    # Every token of a disabled user says so, though disabling also ended its sessions.
    if profile is not None and profile["disabled"]:
        raise AppError(ErrorCode.ACCOUNT_DISABLED, "This account has been disabled.")
    if not standing.live or profile is None:
        raise AppError(ErrorCode.AUTH_SESSION_ENDED, "This session has ended; sign in again.")
    return Principal(user_id=user_id, role=profile["role"], sid=sid, user=profiles.user(profile))


def _standing(user_id: str, sid: str) -> _Standing:
    profile_key = profiles.key(user_id)
    try:
        pipe = get_redis().pipeline(transaction=False)
        pipe.exists(sessions.session_key(user_id, sid))
        pipe.get(cache.redis_key(profile_key))
        live, raw = pipe.execute()
    except Exception as exc:
        if not is_redis_error(exc):
            raise
        applog.log_fields(
            log, logging.WARNING, "authorized from the database", error=type(exc).__name__
        )
        return _from_database(user_id, sid)
    found = cache.stored(profile_key, raw)
    if found is None or not profiles.complete(found.value):
        return _Standing(live=bool(live), profile=profiles.load(user_id))
    return _Standing(live=bool(live), profile=found.value)


def _from_database(user_id: str, sid: str) -> _Standing:
    from sqlalchemy import select  # cold start: only while Redis cannot answer

    from app.db.tables import users  # cold start: only while Redis cannot answer
    from app.db.transaction import transaction  # cold start: only while Redis cannot answer
    from app.identity import ended  # cold start: only while Redis cannot answer

    with transaction() as tx:
        live = not ended.holds(tx, sid)
        row = tx.execute(select(users).where(users.c.id == user_id)).mappings().first()
    return _Standing(live=live, profile=None if row is None else profiles.of_row(row))
