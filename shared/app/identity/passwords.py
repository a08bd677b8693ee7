"""Password hashing (bcrypt) and the constant-shape check for phones that have none.

The cost comes from BCRYPT_COST (10-16); a hash made at another cost is replaced at the
next successful sign-in. Lengths are checked by the input models (8-72 bytes); this module
never sees a longer password.
"""

from __future__ import annotations

import bcrypt

from app.config import get_settings


def hash_password(password: str) -> str:
    salt = bcrypt.gensalt(rounds=get_settings().bcrypt_cost)
    return bcrypt.hashpw(password.encode("utf-8"), salt).decode("ascii")


# For phones without a hash: bcrypt hashes of random values nobody kept, one per cost
# BCRYPT_COST allows (10-16). Checking against one takes as long as a real check and can
# never succeed; being constants, they cost nothing at import and nothing at first use.
_DUMMY_HASHES = {
    10: b"$2b$10$IIIdMOlO8MpvzZA4vssZPe.L0nQApVoyhNRQohdrgdDF2ZXuD/tYO",
    11: b"$2b$11$Fvk8ufdlXmU98uCQ7yXVJeHvgilb11SigWzKLBfKpej19etgQIUCe",
    12: b"$2b$12$iDuCT2K14blauvtUZqt.meTZQ2rxCIpJ3cGN2NVdnm/cdGU4Lks/S",
    13: b"$2b$13$kyacrJXThoLpo0qlCInivOfpbIRjQhjFJCgN2ibCjqSu2btFecdhO",
    14: b"$2b$14$XQz/Fn4fdMfWbqAHueHKKevuvKhcotYvL7fejSriJE/tLbnxKTZqO",
    15: b"$2b$15$keyFxE2Fb4ZAEgrKFd388ubnaCIjAv0we3URQQ3ONLVqyH7sf0LtO",
    16: b"$2b$16$y45JWbjLWNMuOCLZ41mUAuCGw3iCTG0LVraiZST4cfvj5n8YDf.CO",
}


def _cost(stored_hash: str) -> int | None:
    """The cost a `$2b$12$...` hash was made with; None for anything malformed."""
    parts = stored_hash.split("$")
    return int(parts[2]) if len(parts) == 4 and parts[2].isdigit() else None


def needs_rehash(stored_hash: str) -> bool:
    """True when the hash was made at another cost than BCRYPT_COST: rehashed at the next
    successful sign-in, so every check takes as long as the dummy one."""
    cost = _cost(stored_hash)
    return cost is not None and cost != get_settings().bcrypt_cost


def verify(password: str, stored_hash: str | None) -> bool:
    """True only for the right password. A missing hash (unknown phone, WeChat-only user)
    costs one bcrypt check all the same, so timing does not tell the cases apart."""
    candidate = password.encode("utf-8")
    if not stored_hash:
        bcrypt.checkpw(candidate, _DUMMY_HASHES[get_settings().bcrypt_cost])
        return False
    try:
        return bcrypt.checkpw(candidate, stored_hash.encode("ascii"))
    except ValueError:  # a malformed stored hash is a wrong password, never a 500
        return False
