"""Tokens signed with one of our own secrets whose claims are not of the shapes the issuer
(app.identity.tokens.issue) writes: only a holder of the secret can mint one, and each must
still be refused as a bad token, never reach Redis or the database with its odd value, and
never be a 500.

Each case changes one claim of an otherwise good token; `tokens_of` signs them all under the
`kid` of the secret, so anything but the odd claim would be taken. A claim the issuer never
writes is ignored, whatever its value (`ignored_of`), unless the JSON reader cannot read it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

from app.identity import tokens

_GONE = object()  # the claim is left out
_NESTED = 1_200  # past the JSON reader's recursion limit (1,000), in a token under 4 KB


def _text_cases(claim: str, good: str) -> dict[str, dict[str, Any]]:
    """`claim`, a text the issuer writes as `good`, as anything but such a text."""
    return {
        f"{claim} {name}": {claim: value}
        for name, value in {
            "empty": "",
            "a number": 42,
            "a boolean": True,
            "a list": [good],
            "an object": {claim: good},
            "a lone surrogate": "\ud800" + good[1:],
            "a NUL": good[:-1] + "\x00",
            "braces": "{" + good[2:] + "}",
            "too long": good * 20,
        }.items()
    }


def _cases(claims: dict[str, Any]) -> dict[str, dict[str, Any]]:
    exp, iat = claims["exp"], claims["iat"]
    odd = {
        name: case
        for claim in ("sub", "sid", "jti")
        for name, case in _text_cases(claim, claims[claim]).items()
    }
    for claim, now in (("iat", iat), ("exp", exp)):
        for name, value in {
            "a string": str(now),
            "a boolean": True,
            "a fraction": now + 0.5,
            "a list": [now],
            "an object": {"t": now},
            "infinite": float("inf"),
            "NaN": float("nan"),
            "huge": 10**30,
            "negative": -(10**30),
        }.items():
            odd[f"{claim} {name}"] = {claim: value}
    odd["typ a list"] = {"typ": [claims["typ"]]}
    odd["iss a list"] = {"iss": [claims["iss"]]}
    odd["aud a list"] = {"aud": [claims["aud"]]}
    odd["aud a list with another"] = {"aud": [claims["aud"], "someone-else"]}
    odd["role a number"] = {"role": 5}
    odd["role an object"] = {"role": {"role": "admin"}}
    odd["phone a list"] = {"phone": [claims.get("phone")]}
    odd["phone a number"] = {"phone": 13_900_000_000}
    odd["no jti"] = {"jti": _GONE}
    return odd


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _signed(payload: bytes, secret: str) -> str:
    """`payload` as given, signed with `secret` as the issuer signs (HS256, its `kid`):
    jwt.encode cannot write a claim nested past the JSON writer's own limit."""
    header = json.dumps({"alg": "HS256", "typ": "JWT", "kid": tokens.key_id(secret)})
    signing_input = f"{_b64(header.encode())}.{_b64(payload)}"
    mac = hmac.new(secret.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(mac)}"


def good_token(claims: dict[str, Any], secret: str) -> str:
    """`claims` signed as the issuer signs them: the control for the cases."""
    return _signed(json.dumps(claims).encode(), secret)


def ignored_of(claims: dict[str, Any], secret: str) -> dict[str, str]:
    """`claims` with claims the issuer never writes added, by name, signed with `secret`:
    each is taken as `claims` alone."""
    extra: dict[str, dict[str, Any]] = {
        "an extra claim": {"scope": "admin"},
        "an extra nested claim": {"extra": {"a": [1, {"b": claims["sub"]}]}},
        "nbf a list": {"nbf": [claims["exp"]]},
        "nbf in the future": {"nbf": claims["exp"]},
    }
    return {name: good_token({**claims, **added}, secret) for name, added in extra.items()}


def tokens_of(claims: dict[str, Any], secret: str) -> dict[str, str]:
    """Each odd case of `claims`, by name, signed with `secret`."""
    signed = {}
    for name, change in _cases(claims).items():
        changed = {**claims, **change}
        payload = {key: value for key, value in changed.items() if value is not _GONE}
        signed[name] = _signed(json.dumps(payload).encode(), secret)
    nested = b"[" * _NESTED + b"]" * _NESTED
    raw = json.dumps(claims).encode()
    signed["an extra claim nested too deep"] = _signed(
        raw[:-1] + b', "x": ' + nested + b"}", secret
    )
    return signed
