"""Session test support: whether a session is still in Redis, which no request path asks on
its own (an access check reads it with the rest of the principal, app.identity.access)."""

from __future__ import annotations

from app.identity.sessions import session_key
from app.redis_client import get_redis


def is_live(user_id: str, sid: str) -> bool:
    return bool(get_redis().exists(session_key(user_id, sid)))
