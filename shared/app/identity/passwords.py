"""Password hashing (bcrypt) and the constant-shape check for phones that have none.

The cost comes from BCRYPT_COST (at least 10). Lengths are checked by the input models
(8-72 bytes); this module never sees a longer password.
"""

from __future__ import annotations

import functools

import bcrypt

from app.config import get_settings


def hash_password(password: str) -> str:
    salt = bcrypt.gensalt(rounds=get_settings().bcrypt_cost)
    return bcrypt.hashpw(password.encode("utf-8"), salt).decode("ascii")


@functools.lru_cache(maxsize=4)
def _dummy_hash(cost: int) -> bytes:
    # A hash of a random value at the configured cost: checking against it takes as long
    # as a real check and can never succeed.
    import secrets

    return bcrypt.hashpw(secrets.token_bytes(32), bcrypt.gensalt(rounds=cost))


def verify(password: str, stored_hash: str | None) -> bool:
    """True only for the right password. A missing hash (unknown phone, WeChat-only user)
    costs one bcrypt check all the same, so timing does not tell the cases apart."""
    candidate = password.encode("utf-8")
    if not stored_hash:
        bcrypt.checkpw(candidate, _dummy_hash(get_settings().bcrypt_cost))
        return False
    try:
        return bcrypt.checkpw(candidate, stored_hash.encode("ascii"))
    except ValueError:  # a malformed stored hash is a wrong password, never a 500
        return False
