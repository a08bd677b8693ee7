"""Every non-public route of the route table, whoever declared it, refuses forged, expired,
wrong-type and missing tokens; every admin route refuses a user's token."""

from __future__ import annotations

import base64
import json
import re
import time
from typing import Any

import jwt
import pytest

from app.api import all_routes
from app.config import get_settings
from app.http import Auth, http_handler
from app.http.routing import Route
from app.identity import tokens
from tests.support import odd_claims
from tests.support.contract import route_table
from tests.support.function_url import call
from tests.support.pipelines import token_for
from tests.support.quota import new_user

PROTECTED = [r for r in all_routes() if r.auth in (Auth.USER, Auth.ADMIN)]
ADMIN = [r for r in PROTECTED if r.auth is Auth.ADMIN]
# The contract's auth column, in the route table's words.
CONTRACT_AUTH = {
    "-": Auth.PUBLIC,
    "user": Auth.USER,
    "admin": Auth.ADMIN,
    "signature": Auth.SIGNATURE,
    "`METRICS_TOKEN`": Auth.METRICS,
}


def _id(route: Route) -> str:
    return f"{route.method} {route.path}"


def _call(route: Route, token: str | None = None, headers: dict[str, str] | None = None):
    path = re.sub(r"\{[^}]+\}", "x", route.path)
    return call(
        http_handler(route),
        route.method,
        path,
        body={},
        token=token,
        headers=headers,
    )


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


def _claims(typ: str = "access", role: str = "user", **override: Any) -> dict[str, Any]:
    settings = get_settings()
    now = int(time.time())
    claims = {
        "sub": "u-route-walk-of-22char",  # the shape of a user id (app.ids)
        "phone": "+8613900000000",
        "role": role,
        "sid": "s1",
        "jti": "j1",
        "typ": typ,
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
        "iat": now,
        "exp": now + 600,
    }
    claims.update(override)
    return {k: v for k, v in claims.items() if v is not None}


def _signed(
    claims: dict[str, Any], key: str | None = None, alg: str = "HS256", kid: str | None = None
) -> str:
    secret = key or get_settings().jwt_secret.get_secret_value()
    return jwt.encode(claims, secret, algorithm=alg, headers={"kid": kid} if kid else None)


def _our_kid() -> str:
    return tokens.key_id(get_settings().jwt_secret.get_secret_value())


def _expired() -> dict[str, int]:
    return {"iat": int(time.time()) - 1000, "exp": int(time.time()) - 10}


FORGERIES = {
    "refresh token": (lambda: _signed(_claims(typ="refresh", role="admin")), "AUTH_TOKEN_INVALID"),
    "another key": (lambda: _signed(_claims(role="admin"), key="k" * 64), "AUTH_TOKEN_INVALID"),
    "another key under our kid": (
        lambda: _signed(_claims(role="admin"), key="k" * 64, kid=_our_kid()),
        "AUTH_TOKEN_INVALID",
    ),
    # A kid names the key to verify with: one naming none of ours is refused outright, even
    # signed with our key (only what we sign carries our kid).
    "our key under an unknown kid": (
        lambda: _signed(_claims(role="admin"), kid="0" * 16),
        "AUTH_TOKEN_INVALID",
    ),
    "alg none": (
        lambda: f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(_claims(role='admin'))}.",
        "AUTH_TOKEN_INVALID",
    ),
    "HS512 with our key": (
        lambda: _signed(_claims(role="admin"), alg="HS512"),
        "AUTH_TOKEN_INVALID",
    ),
    "expired": (
        lambda: _signed(
            _claims(role="admin", iat=int(time.time()) - 1000, exp=int(time.time()) - 10)
        ),
        "AUTH_TOKEN_EXPIRED",
    ),
    # Expired is said only of a token that is otherwise one this route takes: a client told
    # "expired" refreshes, which a refresh token or another audience's token never warrants.
    "expired refresh token": (
        lambda: _signed(_claims(typ="refresh", **_expired())),
        "AUTH_TOKEN_INVALID",
    ),
    "expired, wrong aud": (
        lambda: _signed(_claims(aud="someone-else", **_expired())),
        "AUTH_TOKEN_INVALID",
    ),
    "expired, no iss": (lambda: _signed(_claims(iss=None, **_expired())), "AUTH_TOKEN_INVALID"),
    "no iss": (lambda: _signed(_claims(role="admin", iss=None)), "AUTH_TOKEN_INVALID"),
    "wrong aud": (lambda: _signed(_claims(role="admin", aud="someone-else")), "AUTH_TOKEN_INVALID"),
    "no exp": (lambda: _signed(_claims(role="admin", exp=None)), "AUTH_TOKEN_INVALID"),
    "garbage": (lambda: "a.b.c", "AUTH_TOKEN_INVALID"),
    # A header nested deeper than the JSON reader's recursion limit: read before anything is
    # verified, by anyone who sends it.
    "header nested too deep": (
        lambda: base64.urlsafe_b64encode(b'{"kid":' + b"[" * 5_000 + b"]" * 5_000 + b"}")
        .decode()
        .rstrip("=")
        + f".{_b64(_claims(role='admin'))}.c2ln",
        "AUTH_TOKEN_INVALID",
    ),
}


def test_the_walk_covers_the_identity_routes() -> None:
    walked = {_id(r) for r in PROTECTED}
    assert {
        "POST /auth/logout",
        "POST /auth/logout-all",
        "GET /users/me",
        "PATCH /users/me",
        "GET /admin/users",
        "PATCH /admin/users/{id}",
    } <= walked
    assert {"GET /admin/users", "PATCH /admin/users/{id}"} <= {_id(r) for r in ADMIN}


def test_every_route_of_the_contract_has_the_contracts_auth() -> None:
    """The walks below take their routes from the table's own auth: a route declared public
    or user that the contract says is admin would drop out of them and still pass."""
    contract = {
        f"{method} {path}": CONTRACT_AUTH[auth] for (method, path), auth in route_table().items()
    }
    assert len(contract) > 20
    table = {_id(r): r.auth for r in all_routes()}
    assert {route: table.get(route) for route in contract} == contract


@pytest.mark.parametrize("route", PROTECTED, ids=_id)
def test_a_missing_token_is_401(route: Route) -> None:
    reply = _call(route)
    assert (reply.status, reply.json()["code"]) == (401, "AUTH_REQUIRED")
    reply = _call(route, headers={"Authorization": "Basic dXNlcjpwdw=="})
    assert (reply.status, reply.json()["code"]) == (401, "AUTH_TOKEN_INVALID")


@pytest.mark.parametrize("route", PROTECTED, ids=_id)
@pytest.mark.parametrize("forgery", sorted(FORGERIES))
def test_forged_and_expired_tokens_are_401(route: Route, forgery: str) -> None:
    make, code = FORGERIES[forgery]
    reply = _call(route, token=make())
    assert (reply.status, reply.json()["code"]) == (401, code)


@pytest.mark.parametrize("route", PROTECTED, ids=_id)
def test_tokens_of_our_key_with_claims_of_odd_shapes_are_401(
    route: Route, clean_redis: Any
) -> None:
    """Claims of a type or shape the issuer never writes, in a token our own key signed for
    a live session: refused as bad tokens before their values reach Redis or the database,
    never a 500. The same claims as the issuer wrote them get past authentication."""
    secret = get_settings().jwt_secret.get_secret_value()
    live = tokens.decode(token_for(new_user()), "access")
    control = _call(route, token=odd_claims.good_token(live, secret))
    assert control.status not in (401, 500), control.body
    refused = {}
    for case, token in odd_claims.tokens_of(live, secret).items():
        reply = _call(route, token=token)
        refused[case] = (reply.status, reply.json().get("code"))
    assert {case: got for case, got in refused.items() if got != (401, "AUTH_TOKEN_INVALID")} == {}


@pytest.mark.parametrize("route", ADMIN, ids=_id)
def test_admin_routes_refuse_a_user_token(route: Route) -> None:
    # Even one that claims the admin role: the role is the user's, read at each request.
    for claimed in ("user", "admin"):
        reply = _call(route, token=token_for(new_user(), role=claimed))
        assert (reply.status, reply.json()["code"]) == (403, "FORBIDDEN"), claimed


def test_the_tokens_of_the_walk_are_otherwise_accepted(clean_redis: Any) -> None:
    """The control: the same claims, honestly signed for a user's live session, get past
    authentication."""
    from app.api.users import get_me

    user_id = new_user()
    live = tokens.decode(token_for(user_id), "access")
    claims = _claims(sub=user_id, sid=live["sid"])
    reply = call(http_handler(get_me), "GET", "/users/me", token=_signed(claims))
    assert reply.status == 200 and reply.json()["id"] == user_id


def test_a_token_from_a_clock_a_little_ahead_is_accepted_one_far_ahead_is_not(
    clean_redis: Any,
) -> None:
    """Tokens are minted on one instance and read on another: an `iat` a few seconds in the
    reader's future is the minter's clock, not a forgery, and the pair must work at once
    (refreshed too). One further ahead than any clock is off would outlive its lifetime."""
    from app.api.users import get_me

    user_id = new_user()
    sid = tokens.decode(token_for(user_id), "access")["sid"]
    ahead = int(time.time()) + 5
    claims = _claims(sub=user_id, sid=sid, iat=ahead, exp=ahead + 600)
    reply = call(http_handler(get_me), "GET", "/users/me", token=_signed(claims))
    assert reply.status == 200, reply.body
    refresh = _signed(_claims(typ="refresh", sub=user_id, sid=sid, iat=ahead, exp=ahead + 600))
    assert tokens.decode(refresh, "refresh")["sub"] == user_id

    far = int(time.time()) + tokens.CLOCK_SKEW_S + 60
    claims = _claims(sub=user_id, sid=sid, iat=far, exp=far + 600)
    reply = call(http_handler(get_me), "GET", "/users/me", token=_signed(claims))
    assert (reply.status, reply.json()["code"]) == (401, "AUTH_TOKEN_INVALID")
