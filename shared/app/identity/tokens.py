"""JWT access and refresh tokens: HS256 pinned, never the algorithm a token names.

Signing keys rotate with an overlap: a token is signed with JWT_SECRET and names it in its
header's `kid` (`key_id`, a hash of the secret), and is verified with the secret its `kid`
names, JWT_SECRET or JWT_PREVIOUS_SECRET, and no other. A token with no `kid` (minted
before tokens carried one) is tried against both. A `kid` naming neither is refused, even
on a token one of them signed; a forged one buys nothing, since the secret it names still
has to verify the signature. Refreshing a token of the previous secret mints a pair of the
current one (app.identity.sessions issues every new pair here).

Claims: sub (user id), phone, role, sid (session), jti, typ (access|refresh), iss, aud,
iat, exp. The role and phone are for the client's display: a request is authorized by the
session's liveness and the user's current role and state (app.identity.access), and a
refresh token is also checked against the session store (app.identity.sessions).

A verified token's claims must be those `issue` writes, each of the type and shape it writes
them in: one that is not (only a holder of a secret can sign one) is refused as a bad token
before any value reaches a Redis key or a query. A claim `issue` does not write is ignored
and left out of the claims returned (RFC 7519 section 4: claims not understood are
ignored), so a release that adds one signs no user of an older release out while both run.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import sys
import time
from collections.abc import Callable
from typing import Any, Literal

from app.config import get_settings
from app.errors import AppError, ErrorCode
from app.ids import is_id

# PyJWT imports `cryptography` as it loads, when it is installed, for RSA, EC and EdDSA
# keys. The layer ships it for envelopes (app.crypto) and HS256 needs none of it: hidden
# while PyJWT loads, it stays off every sign-in function's cold start (~15 ms) unless an
# envelope needs it. tests/test_import_budget.py sees it if it comes back.
_cryptography = sys.modules.get("cryptography")
sys.modules["cryptography"] = None  # type: ignore[assignment]
try:
    import jwt
finally:
    if _cryptography is None:
        del sys.modules["cryptography"]
    else:
        sys.modules["cryptography"] = _cryptography

ALGORITHM = "HS256"
# Tokens are minted on one instance and read on another, each by its own clock: an `iat` up
# to this far in the reader's future is the minter's clock running ahead, and is taken (PyJWT
# refuses any, so a pair minted on a clock a second ahead failed at once elsewhere). Further
# ahead, a token would live here longer than its lifetime: refused.
CLOCK_SKEW_S = 60
TokenType = Literal["access", "refresh"]
# sid and jti as secrets.token_urlsafe writes them (16 and 22 characters), with room.
_TOKEN_TEXT = re.compile(r"[A-Za-z0-9_-]{1,64}")
# 9999-12-31T23:59:59Z: a time past it is no date of ours.
_LAST_TIME = 253_402_300_799


def new_jti() -> str:
    return secrets.token_urlsafe(16)


def issue(
    typ: TokenType,
    *,
    user_id: str,
    role: str,
    sid: str,
    phone: str | None = None,
    jti: str | None = None,
    now: float | None = None,
) -> tuple[str, dict[str, Any]]:
    """A signed token and its claims."""
    settings = get_settings()
    issued = int(now if now is not None else time.time())
    ttl = settings.access_token_ttl_s if typ == "access" else settings.refresh_token_ttl_s
    claims: dict[str, Any] = {
        "sub": user_id,
        "phone": phone,
        "role": role,
        "sid": sid,
        "jti": jti or new_jti(),
        "typ": typ,
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
        "iat": issued,
        "exp": issued + ttl,
    }
    secret = settings.jwt_secret.get_secret_value()
    token = jwt.encode(claims, secret, algorithm=ALGORITHM, headers={"kid": key_id(secret)})
    return token, claims


def key_id(secret: str) -> str:
    """The `kid` of tokens signed with `secret`: a short hash of it, which tells the keys
    apart and, the secret being of 128 bits and more (app.config.production), gives away
    nothing of it."""
    return hashlib.sha256(b"ai-platform jwt kid:" + secret.encode()).hexdigest()[:16]


def _verifying_keys(token: str) -> list[str]:
    """The secrets `token` may be verified with: the one its `kid` names, or for a token
    without one, JWT_SECRET then JWT_PREVIOUS_SECRET."""
    keys = get_settings().jwt_secrets
    try:
        header = jwt.get_unverified_header(token)
    except RecursionError as exc:
        # A header nested past the JSON reader's limit, which PyJWT lets through as is: read
        # before any signature is checked, so anyone can send one.
        raise jwt.DecodeError("The token's header is nested too deep") from exc
    if "kid" not in header:
        return keys
    named = [key for key in keys if key_id(key) == header["kid"]]
    if not named:
        raise jwt.InvalidKeyError("The token's kid names no key of ours")
    return named[:1]


def decode(token: str, typ: TokenType) -> dict[str, Any]:
    """Verified claims of a token of the expected type.

    Raises AUTH_TOKEN_EXPIRED for an expired token of the right type and AUTH_TOKEN_INVALID
    for anything else; callers that need another code (refresh) translate.
    """
    try:
        claims = _verified(token, check_exp=True)
    except jwt.ExpiredSignatureError:
        # `exp` is checked last (`_checked`), after `iss`, `aud` and the claims' shapes, but
        # nothing there knows `typ`: "expired" is said only of a token that would otherwise be
        # taken here, since it tells the client to refresh, which a refresh token never warrants.
        try:
            expired = _verified(token, check_exp=False)
        except jwt.PyJWTError as exc:
            raise AppError(ErrorCode.AUTH_TOKEN_INVALID) from exc
        if expired.get("typ") != typ:
            raise AppError(ErrorCode.AUTH_TOKEN_INVALID) from None
        raise AppError(ErrorCode.AUTH_TOKEN_EXPIRED) from None
    except jwt.PyJWTError as exc:
        raise AppError(ErrorCode.AUTH_TOKEN_INVALID) from exc
    if claims.get("typ") != typ:
        raise AppError(ErrorCode.AUTH_TOKEN_INVALID)
    return claims


def _verified(token: str, *, check_exp: bool) -> dict[str, Any]:
    settings = get_settings()
    options: dict[str, Any] = {
        "algorithms": [ALGORITHM],
        "audience": settings.jwt_audience,
        "issuer": settings.jwt_issuer,
        # PyJWT reads exp and nbf with int(), which raises TypeError or OverflowError on a
        # list or an infinity rather than its own errors: _checked reads exp once its shape
        # is known, and nbf is no claim of ours (ignored, as any other). Which claims must
        # be there is `_SHAPES`' to say (`phone` alone may be missing or null).
        "options": {
            "verify_exp": False,
            "verify_nbf": False,
            "verify_iat": False,
        },
    }
    keys = _verifying_keys(token)
    for key in keys[:-1]:
        try:
            return _checked(_decoded(token, key, options), check_exp=check_exp)
        except jwt.InvalidSignatureError:
            continue  # signed with the next key: PyJWT checks the signature before the claims
    return _checked(_decoded(token, keys[-1], options), check_exp=check_exp)


def _decoded(token: str, key: str, options: dict[str, Any]) -> dict[str, Any]:
    try:
        claims: dict[str, Any] = jwt.decode(token, key, **options)
    except RecursionError as exc:
        # Claims nested past the JSON reader's limit, which PyJWT lets through as is: read
        # once the signature holds, so only a holder of the key can send them.
        raise jwt.DecodeError("The token's claims are nested too deep") from exc
    return claims


def _is_text(value: Any) -> bool:
    return isinstance(value, str) and 0 < len(value) <= 32 and value.isprintable()


def _is_token_text(value: Any) -> bool:
    return isinstance(value, str) and _TOKEN_TEXT.fullmatch(value) is not None


def _is_time(value: Any) -> bool:
    """Whole seconds since the epoch, as `issue` writes iat and exp."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value <= _LAST_TIME


# Each claim `issue` writes and whether a value is of the shape it writes it in.
_SHAPES: dict[str, Callable[[Any], bool]] = {
    "sub": lambda value: isinstance(value, str) and is_id(value),
    "phone": lambda value: value is None or _is_text(value),
    "role": _is_text,
    "sid": _is_token_text,
    "jti": _is_token_text,
    "typ": lambda value: isinstance(value, str) and value in ("access", "refresh"),
    # PyJWT compares both with ours, and takes an `aud` that is a list holding ours.
    "iss": lambda value: isinstance(value, str),
    "aud": lambda value: isinstance(value, str),
    "iat": _is_time,
    "exp": _is_time,
}


def _checked(claims: dict[str, Any], *, check_exp: bool) -> dict[str, Any]:
    """The claims `issue` writes, each checked for its shape; any other left out."""
    claims = {name: claims[name] for name in _SHAPES if name in claims}
    if not all(fits(claims.get(name)) for name, fits in _SHAPES.items()):
        raise jwt.InvalidTokenError("The token's claims are not those we write")
    if claims["iat"] > time.time() + CLOCK_SKEW_S:
        raise jwt.ImmatureSignatureError("The token is not yet valid (iat)")
    if check_exp and claims["exp"] <= time.time():
        raise jwt.ExpiredSignatureError("Signature has expired")
    return claims
