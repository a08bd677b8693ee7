"""The cached profile of each user (`user:profile:{id}`), the one thing several domains change.

Identity builds the `User` view from it and reads it on every signed-in request; quota
changes the counters it shows, identity the role, state and profile fields, payments the
membership. So the key and the way to drop the entry live here, below all of them: whoever
commits a change of a user row drops the entry after the commit,

    tx.after_commit(profiles.forgetter(user_id))

and `app.cache` never lets a load that started before the drop store what it read.
"""

from __future__ import annotations

from collections.abc import Callable

from app import cache

TTL_S = 3600


def key(user_id: str) -> str:
    return f"user:profile:{user_id}"


def forget(user_id: str) -> None:
    """Drop the cached profile (a Redis failure is logged by the cache, never raised)."""
    cache.invalidate(key(user_id))


def forgetter(user_id: str) -> Callable[[], None]:
    """`forget(user_id)` as an after-commit effect."""

    def forget_profile() -> None:
        forget(user_id)

    return forget_profile
