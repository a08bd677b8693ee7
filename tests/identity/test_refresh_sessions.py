"""Refresh rotation, the grace window, reuse detection, sessions per device, logout."""

from __future__ import annotations

import threading
import time

import jwt

from app.config import get_settings
from app.identity import sessions, tokens
from app.redis_client import get_redis
from tests.identity.conftest import Flows
from tests.support import odd_claims
from tests.support.sessions import is_live


def _pair_of(reply) -> tuple[str, str]:
    data = reply.json()
    return data["access_token"], data["refresh_token"]


def test_refresh_rotates_and_the_new_pair_works(flows: Flows) -> None:
    first = flows.registered()
    reply = flows.refresh(first["refresh_token"])
    assert reply.status == 200, reply.body
    second = reply.json()
    assert second["refresh_token"] != first["refresh_token"]
    assert second["is_new_user"] is False and second["user"]["id"] == first["user"]["id"]
    old, new = (tokens.decode(t["refresh_token"], "refresh") for t in (first, second))
    assert old["sid"] == new["sid"] and old["jti"] != new["jti"]
    assert flows.me(second["access_token"]).status == 200
    assert flows.refresh(second["refresh_token"]).status == 200


def test_a_retired_token_within_the_grace_window_gets_the_identical_pair(flows: Flows) -> None:
    first = flows.registered()
    second = flows.refresh(first["refresh_token"])
    again = flows.refresh(first["refresh_token"])
    assert again.status == 200
    assert _pair_of(again) == _pair_of(second)


def test_a_retired_token_after_the_grace_window_ends_the_session(flows: Flows) -> None:
    first = flows.registered()
    user_id = first["user"]["id"]
    sid = tokens.decode(first["refresh_token"], "refresh")["sid"]
    second = flows.refresh(first["refresh_token"]).json()
    # The grace window passes.
    jti = tokens.decode(first["refresh_token"], "refresh")["jti"]
    assert get_redis().delete(sessions.grace_key(user_id, sid, jti)) == 1
    reused = flows.refresh(first["refresh_token"])
    assert (reused.status, reused.json()["code"]) == (401, "AUTH_REFRESH_REUSED")
    # The whole session is gone: the newest token no longer refreshes either.
    assert not is_live(user_id, sid)
    after = flows.refresh(second["refresh_token"])
    assert (after.status, after.json()["code"]) == (401, "AUTH_REFRESH_INVALID")


def test_grace_window_is_thirty_seconds(flows: Flows) -> None:
    first = flows.registered()
    flows.refresh(first["refresh_token"])
    claims = tokens.decode(first["refresh_token"], "refresh")
    ttl = get_redis().ttl(sessions.grace_key(claims["sub"], claims["sid"], claims["jti"]))
    assert 25 <= ttl <= 30
    session_ttl = get_redis().ttl(sessions.session_key(claims["sub"], claims["sid"]))
    assert 604800 - 10 <= session_ttl <= 604800


def test_an_access_token_is_not_a_refresh_token_and_garbage_is_not_either(flows: Flows) -> None:
    pair = flows.registered()
    for bad in (pair["access_token"], "not-a-jwt", pair["refresh_token"] + "x"):
        reply = flows.refresh(bad)
        assert (reply.status, reply.json()["code"]) == (401, "AUTH_REFRESH_INVALID")
    assert flows.refresh("").status == 422


def test_each_device_has_its_own_session(flows: Flows) -> None:
    phone = flows.registered()["user"]["phone"]
    a = flows.login(phone).json()
    b = flows.login(phone).json()
    assert flows.refresh(a["refresh_token"]).status == 200
    assert flows.refresh(b["refresh_token"]).status == 200
    assert len(sessions.active(a["user"]["id"])) == 3  # register + two logins


def test_logout_ends_only_this_session(flows: Flows) -> None:
    phone = flows.registered()["user"]["phone"]
    a = flows.login(phone).json()
    b = flows.login(phone).json()
    reply = flows.call("auth-logout", "POST", "/auth/logout", body={}, token=a["access_token"])
    assert reply.status == 204 and reply.body == ""
    assert flows.refresh(a["refresh_token"]).json()["code"] == "AUTH_REFRESH_INVALID"
    assert flows.refresh(b["refresh_token"]).status == 200
    # The ended session's access token is refused at once; the other device carries on.
    reply = flows.me(a["access_token"])
    assert (reply.status, reply.json()["code"]) == (401, "AUTH_SESSION_ENDED")
    assert flows.me(b["access_token"]).status == 200


def test_logout_all_ends_every_session(flows: Flows) -> None:
    first = flows.registered()
    phone = first["user"]["phone"]
    others = [flows.login(phone).json() for _ in range(2)]
    reply = flows.call(
        "auth-logout-all", "POST", "/auth/logout-all", body={}, token=others[0]["access_token"]
    )
    assert reply.status == 204
    for pair in [first, *others]:
        assert flows.refresh(pair["refresh_token"]).json()["code"] == "AUTH_REFRESH_INVALID"
    assert sessions.active(first["user"]["id"]) == set()


def test_logout_needs_an_access_token(flows: Flows) -> None:
    pair = flows.registered()
    reply = flows.call("auth-logout", "POST", "/auth/logout", body={}, token=pair["refresh_token"])
    assert (reply.status, reply.json()["code"]) == (401, "AUTH_TOKEN_INVALID")
    assert flows.refresh(pair["refresh_token"]).status == 200


def test_a_role_change_shows_in_the_next_refresh(flows: Flows) -> None:
    pair = flows.registered()
    user_id = pair["user"]["id"]
    admin = flows.admin_token()
    flows.call(
        "admin-users-id",
        "PATCH",
        f"/admin/users/{user_id}",
        body={"role": "admin"},
        token=admin,
    )
    refreshed = flows.refresh(pair["refresh_token"]).json()
    assert tokens.decode(refreshed["access_token"], "access")["role"] == "admin"
    assert refreshed["user"]["role"] == "admin"


def test_twenty_concurrent_refreshes_of_one_token_make_one_new_session_state(flows: Flows) -> None:
    """Defined outcome: every one of the 20 answers is 200 with the same new pair (the first
    rotation's; the rest are inside the grace window). None is an error, and the session
    moved forward exactly once."""
    first = flows.registered()
    user_id = first["user"]["id"]
    claims = tokens.decode(first["refresh_token"], "refresh")
    barrier = threading.Barrier(20)
    replies: list = [None] * 20

    def refresh(i: int) -> None:
        barrier.wait()
        replies[i] = flows.refresh(first["refresh_token"])

    threads = [threading.Thread(target=refresh, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(r.status == 200 for r in replies), [r.body for r in replies if r.status != 200]
    pairs = {_pair_of(r) for r in replies}
    assert len(pairs) == 1
    ((_access, refresh_token),) = pairs
    new = tokens.decode(refresh_token, "refresh")
    assert new["sid"] == claims["sid"]
    # One session, whose current jti is the one every caller got.
    assert sessions.active(user_id) == {claims["sid"]}
    assert get_redis().get(sessions.session_key(user_id, claims["sid"])) == new["jti"]
    assert flows.refresh(refresh_token).status == 200


def test_a_sign_in_past_the_bound_ends_the_least_recently_used_session(flows: Flows) -> None:
    """A user keeps at most MAX_SESSIONS sessions, so no account can grow the set every
    sign-in reads without end: the one beyond ends the session refreshed or started longest
    ago, and that session's tokens are refused at once (Redis and the database agree)."""
    from app.db.transaction import transaction
    from app.identity import ended

    first = flows.registered()
    user_id, phone = first["user"]["id"], first["user"]["phone"]
    time.sleep(0.01)
    stalest = flows.login(phone).json()
    time.sleep(0.01)
    for _ in range(sessions.MAX_SESSIONS - 2):
        sessions.start(user_id, role="user", phone=phone)
    time.sleep(0.01)
    # The first session is refreshed now: in use, it is the newest, and not the one to go.
    first = flows.refresh(first["refresh_token"]).json()
    assert len(sessions.active(user_id)) == sessions.MAX_SESSIONS
    newest = flows.login(phone).json()
    assert len(sessions.active(user_id)) == sessions.MAX_SESSIONS
    assert get_redis().scard(sessions.set_key(user_id)) == sessions.MAX_SESSIONS
    ended_reply = flows.me(stalest["access_token"])
    assert (ended_reply.status, ended_reply.json()["code"]) == (401, "AUTH_SESSION_ENDED")
    gone = flows.refresh(stalest["refresh_token"])
    assert (gone.status, gone.json()["code"]) == (401, "AUTH_REFRESH_INVALID")
    with transaction() as tx:
        assert ended.holds(tx, tokens.decode(stalest["access_token"], "access")["sid"])
    for kept in (first, newest):
        assert flows.me(kept["access_token"]).status == 200


def test_a_pair_minted_before_tokens_named_their_key_still_works(flows: Flows) -> None:
    """Tokens name the secret that signed them (`kid`); those of the releases before carry
    no `kid` and are verified with JWT_SECRET, so the change signed no one out."""
    secret = get_settings().jwt_secret.get_secret_value()
    pair = flows.registered()
    assert jwt.get_unverified_header(pair["access_token"])["kid"] == tokens.key_id(secret)
    access, refresh = (
        jwt.encode(jwt.decode(pair[name], options={"verify_signature": False}), secret)
        for name in ("access_token", "refresh_token")
    )
    assert "kid" not in jwt.get_unverified_header(access)
    assert flows.me(access).status == 200
    reply = flows.refresh(refresh)
    assert reply.status == 200, reply.body
    assert jwt.get_unverified_header(reply.json()["refresh_token"])["kid"] == tokens.key_id(secret)


def test_refresh_tokens_of_our_key_with_claims_of_odd_shapes_are_refused(flows: Flows) -> None:
    """A refresh token our key signed whose claims are not of the shapes the issuer writes
    is AUTH_REFRESH_INVALID, never a 500 nor a rotation; the same claims as written, a
    control, still rotate."""
    secret = get_settings().jwt_secret.get_secret_value()
    pair = flows.registered()
    claims = tokens.decode(pair["refresh_token"], "refresh")
    refused = {}
    for case, token in odd_claims.tokens_of(claims, secret).items():
        reply = flows.refresh(token)
        refused[case] = (reply.status, reply.json().get("code"))
    assert {
        case: got for case, got in refused.items() if got != (401, "AUTH_REFRESH_INVALID")
    } == {}
    assert flows.refresh(odd_claims.good_token(claims, secret)).status == 200
