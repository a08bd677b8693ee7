"""Rotating JWT_SECRET with an overlap (README "Secrets and KMS", "Rotating the JWT secret"):
tokens and SMS codes of the old secret keep working while JWT_PREVIOUS_SECRET holds it, the
two-step rollout lets instances on either side of it take each other's tokens, and a `kid`
buys a forger nothing.

Each `settings_env` block is an instance on those settings: the routes run through the
functions' own handlers, on the one database and Redis every instance shares."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from typing import Any

import jwt
import pytest

from app.errors import AppError, ErrorCode
from app.identity import sessions, tokens
from app.ids import new_id
from app.redis_client import get_redis
from tests.identity.conftest import Flows, new_phone
from tests.support import odd_claims
from tests.support.settings import settings_env

OLD = secrets.token_urlsafe(64)
NEW = secrets.token_urlsafe(64)


def only_old() -> Any:
    """An instance before the rotation."""
    return settings_env(JWT_SECRET=OLD, JWT_PREVIOUS_SECRET=None)


def staged() -> Any:
    """Step 1: still signing with the old secret, taking the new one's tokens."""
    return settings_env(JWT_SECRET=OLD, JWT_PREVIOUS_SECRET=NEW)


def rotated() -> Any:
    """Step 2: signing with the new secret, taking the old one's tokens."""
    return settings_env(JWT_SECRET=NEW, JWT_PREVIOUS_SECRET=OLD)


def only_new() -> Any:
    """Step 3, a refresh lifetime later: the old secret gone."""
    return settings_env(JWT_SECRET=NEW, JWT_PREVIOUS_SECRET=None)


def _kid(token: str) -> Any:
    return jwt.get_unverified_header(token).get("kid")


def _signed_with(secret: str, token: str, kid: Any = None, alg: str = "HS256") -> str:
    """The claims of `token`, as verified here, signed again with `secret` under a header
    with `kid` (none when None)."""
    claims = jwt.decode(token, options={"verify_signature": False})
    headers = None if kid is None else {"kid": kid}
    return jwt.encode(claims, secret, algorithm=alg, headers=headers)


def _hand_signed(secret: str, header: dict[str, Any], token: str) -> str:
    """The claims of `token` under `header`, signed HS256 with `secret` by hand: PyJWT
    will not encode a header it would refuse."""

    def part(data: Any) -> bytes:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=")

    claims = jwt.decode(token, options={"verify_signature": False})
    signing_input = part(header) + b"." + part(claims)
    mac = hmac.new(secret.encode(), signing_input, hashlib.sha256).digest()
    return (signing_input + b"." + base64.urlsafe_b64encode(mac).rstrip(b"=")).decode()


def _code(reply: Any) -> tuple[int, str]:
    return reply.status, reply.json()["code"]


def test_a_token_is_signed_with_the_current_secret_and_names_it_by_a_hash(flows: Flows) -> None:
    with rotated():
        pair = flows.registered()
    for token in (pair["access_token"], pair["refresh_token"]):
        assert _kid(token) == tokens.key_id(NEW) != tokens.key_id(OLD)
        assert NEW not in _kid(token)
        jwt.decode(token, NEW, algorithms=["HS256"], options={"verify_aud": False})


def test_a_pair_of_the_old_secret_works_after_the_rotation_and_refreshes_into_the_new(
    flows: Flows,
) -> None:
    with only_old():
        old = flows.registered()
    with rotated():
        assert flows.me(old["access_token"]).status == 200
        reply = flows.refresh(old["refresh_token"])
        assert reply.status == 200, reply.body
        new = reply.json()
        assert {_kid(new["access_token"]), _kid(new["refresh_token"])} == {tokens.key_id(NEW)}
        assert flows.me(new["access_token"]).status == 200
    with only_new():
        assert flows.me(new["access_token"]).status == 200
        assert flows.refresh(new["refresh_token"]).status == 200
        assert _code(flows.me(old["access_token"])) == (401, "AUTH_TOKEN_INVALID")


def test_reuse_of_a_refresh_token_of_the_old_secret_still_ends_the_session(flows: Flows) -> None:
    with only_old():
        old = flows.registered()
    with rotated():
        new = flows.refresh(old["refresh_token"]).json()
        claims = tokens.decode(old["refresh_token"], "refresh")
        # The grace window passes.
        grace = sessions.grace_key(claims["sub"], claims["sid"], claims["jti"])
        assert get_redis().delete(grace) == 1
        assert _code(flows.refresh(old["refresh_token"])) == (401, "AUTH_REFRESH_REUSED")
        assert _code(flows.refresh(new["refresh_token"])) == (401, "AUTH_REFRESH_INVALID")


def test_a_token_without_kid_from_before_kids_verifies_and_refreshes(flows: Flows) -> None:
    with only_old():
        pair = flows.registered()
        # As the release before `kid` minted them: the same claims, no kid.
        access, refresh = (
            _signed_with(OLD, pair[name]) for name in ("access_token", "refresh_token")
        )
        assert _kid(access) is None
        assert flows.me(access).status == 200
    with rotated():
        assert flows.me(access).status == 200
        reply = flows.refresh(refresh)
        assert reply.status == 200, reply.body
        assert _kid(reply.json()["access_token"]) == tokens.key_id(NEW)


def test_in_the_two_step_rollout_each_side_takes_the_others_tokens(flows: Flows) -> None:
    """Step 2 runs instances on `staged` and on `rotated` side by side: each mints with its
    own current secret and takes the other's."""
    with staged():
        by_staged = flows.registered()
        assert _kid(by_staged["access_token"]) == tokens.key_id(OLD)
    with rotated():
        by_rotated = flows.registered()
        assert flows.me(by_staged["access_token"]).status == 200
        refreshed_here = flows.refresh(by_staged["refresh_token"])
        assert refreshed_here.status == 200, refreshed_here.body
    with staged():
        assert flows.me(by_rotated["access_token"]).status == 200
        assert flows.me(refreshed_here.json()["access_token"]).status == 200
        refreshed_there = flows.refresh(refreshed_here.json()["refresh_token"])
        assert refreshed_there.status == 200, refreshed_there.body
        assert _kid(refreshed_there.json()["access_token"]) == tokens.key_id(OLD)
    # And why step 1 comes first: an instance with the old secret alone refuses the new one's.
    with only_old():
        assert _code(flows.me(by_rotated["access_token"])) == (401, "AUTH_TOKEN_INVALID")


@pytest.mark.parametrize(
    ("sender", "verifier"),
    [(only_old, rotated), (staged, rotated), (rotated, staged)],
    ids=["sent before, used after", "sent by step 1, used by step 2", "sent by 2, used by 1"],
)
def test_an_sms_code_stored_on_one_side_of_the_rotation_is_right_on_the_other(
    flows: Flows, sender: Any, verifier: Any
) -> None:
    phone = new_phone()
    with sender():
        pair = flows.registered(phone)
        code = flows.code_for(phone, "login")
    with verifier():
        reply = flows.code_login(phone, code)
        assert reply.status == 200, reply.body
        assert reply.json()["user"]["id"] == pair["user"]["id"]


def test_an_sms_code_of_a_secret_neither_side_holds_is_wrong(flows: Flows) -> None:
    phone = new_phone()
    with only_old():
        flows.registered(phone)
        code = flows.code_for(phone, "login")
    with only_new():
        assert _code(flows.code_login(phone, code)) == (400, "SMS_CODE_INVALID")


def _forgeries(pair: dict[str, Any]) -> dict[str, str]:
    access = pair["access_token"]
    other = "k" * 64
    return {
        "unknown kid, signed with the current secret": _signed_with(NEW, access, kid="0" * 16),
        "kid of the current secret, another key": _signed_with(other, access, tokens.key_id(NEW)),
        "kid of the previous secret, signed with the current": _signed_with(
            NEW, access, tokens.key_id(OLD)
        ),
        "kid of the current secret, signed with the previous": _signed_with(
            OLD, access, tokens.key_id(NEW)
        ),
        "kid that is the secret itself": _signed_with(NEW, access, kid=NEW),
        "kid that is no string": _hand_signed(
            NEW, {"alg": "HS256", "typ": "JWT", "kid": [tokens.key_id(NEW)]}, access
        ),
        "no kid, another key": _signed_with(other, access),
        "HS512 with the current secret and its kid": _signed_with(
            NEW, access, tokens.key_id(NEW), alg="HS512"
        ),
        "alg none with the current kid": jwt.encode(
            jwt.decode(access, options={"verify_signature": False}),
            None,
            algorithm="none",
            headers={"kid": tokens.key_id(NEW)},
        ),
    }


def test_a_forged_or_unknown_kid_and_alg_games_are_refused(flows: Flows) -> None:
    with rotated():
        pair = flows.registered()
        # What the forgeries are made of signs a token that is taken, when honest.
        honest = {"alg": "HS256", "typ": "JWT", "kid": tokens.key_id(NEW)}
        assert flows.me(_hand_signed(NEW, honest, pair["access_token"])).status == 200
        assert flows.me(_signed_with(OLD, pair["access_token"], tokens.key_id(OLD))).status == 200
        for name, forged in _forgeries(pair).items():
            reply = flows.me(forged)
            assert _code(reply) == (401, "AUTH_TOKEN_INVALID"), name


def test_an_expired_token_of_the_previous_secret_is_said_to_be_expired() -> None:
    with only_old():
        token, _ = tokens.issue(
            "access", user_id=new_id(), role="user", sid="s1", now=time.time() - 10_000
        )
    with rotated(), pytest.raises(AppError) as refused:
        tokens.decode(token, "access")
    assert refused.value.code is ErrorCode.AUTH_TOKEN_EXPIRED


def test_tokens_of_the_previous_secret_with_claims_of_odd_shapes_are_refused(
    flows: Flows,
) -> None:
    """The previous secret's tokens are held to the shapes the issuer writes as the current
    one's are: each odd case is a bad token, the control is taken, and so is a token with a
    claim the issuer does not write (a later release's), without it."""
    with only_old():
        pair = flows.registered()
    with rotated():
        for typ in ("access", "refresh"):
            claims = tokens.decode(pair[f"{typ}_token"], typ)
            assert tokens.decode(odd_claims.good_token(claims, OLD), typ) == claims
            refused = {}
            for case, token in odd_claims.tokens_of(claims, OLD).items():
                try:
                    tokens.decode(token, typ)
                except AppError as exc:
                    refused[case] = exc.code
            assert refused == dict.fromkeys(refused, ErrorCode.AUTH_TOKEN_INVALID)
            assert set(refused) == set(odd_claims.tokens_of(claims, OLD))
            # A claim the issuer never writes is ignored, and not handed on.
            for case, token in odd_claims.ignored_of(claims, OLD).items():
                assert tokens.decode(token, typ) == claims, case
