"""Revocation takes effect at the next request. Each request is authorized by its session's
liveness and the user's current role and state (`app.identity.access`), not by what the
access token says: a demoted or disabled admin loses admin rights at once, a disabled user
can no longer spend quota, and logout, logout-all and refresh reuse end the access tokens of
their sessions (`401 AUTH_SESSION_ENDED`). While Redis cannot answer the database does,
never the token; and a change that Redis cannot take at that moment is refused rather than
made and hidden by a stale entry once Redis is back."""

from __future__ import annotations

import threading
from typing import Any

import bcrypt
from sqlalchemy import select

from app import cache, profiles
from app.clock import utcnow
from app.db.tables import ended_sessions, users
from app.db.transaction import transaction
from app.identity import sessions, tokens
from app.redis_client import get_redis
from tests.identity.conftest import Flows, new_phone
from tests.support.function_url import Reply
from tests.support.pipelines import new_pipeline
from tests.support.quota import counters, new_user
from tests.support.redis_watch import commands_sent
from tests.support.settings import redis_down, settings_env


def _patch(flows: Flows, user_id: str, token: str, **body: Any) -> Reply:
    return flows.call("admin-users-id", "PATCH", f"/admin/users/{user_id}", body=body, token=token)


def _registered_admin(flows: Flows) -> dict[str, Any]:
    phone = new_phone()
    with settings_env(ADMIN_PHONES=phone):
        pair = flows.registered(phone)
    assert pair["user"]["role"] == "admin"
    return pair


def _code(reply: Reply) -> tuple[int, str]:
    return reply.status, reply.json()["code"]


def _row(user_id: str) -> dict[str, Any]:
    with transaction() as tx:
        return dict(tx.execute(select(users).where(users.c.id == user_id)).mappings().one())


def test_a_demoted_and_disabled_admin_cannot_undo_it_with_the_token_it_holds(
    flows: Flows,
) -> None:
    a = _registered_admin(flows)
    d = _registered_admin(flows)
    d_id = d["user"]["id"]
    # D's admin rights are in use (and its profile cached) before the change.
    assert _patch(flows, a["user"]["id"], d["access_token"], role="admin").status == 200
    assert _patch(flows, d_id, a["access_token"], role="user", disabled=True).status == 200

    undo = _patch(flows, d_id, d["access_token"], role="admin", disabled=False)
    assert _code(undo) == (403, "ACCOUNT_DISABLED")
    strike = _patch(flows, a["user"]["id"], d["access_token"], disabled=True)
    assert _code(strike) == (403, "ACCOUNT_DISABLED")
    assert (_row(d_id)["role"], _row(d_id)["disabled"]) == ("user", True)
    assert _row(a["user"]["id"])["disabled"] is False


def test_a_demoted_admin_is_a_user_at_its_next_request(flows: Flows) -> None:
    a = _registered_admin(flows)
    d = _registered_admin(flows)
    d_id = d["user"]["id"]
    assert flows.me(d["access_token"]).json()["role"] == "admin"  # cached as admin
    assert _patch(flows, d_id, a["access_token"], role="user").status == 200

    assert _code(_patch(flows, d_id, d["access_token"], role="admin")) == (403, "FORBIDDEN")
    assert _code(_patch(flows, a["user"]["id"], d["access_token"], disabled=True)) == (
        403,
        "FORBIDDEN",
    )
    assert flows.me(d["access_token"]).json()["role"] == "user"
    assert _row(d_id)["role"] == "user"


def test_a_disabled_user_cannot_create_a_task_and_nothing_is_charged(flows: Flows) -> None:
    pair = flows.registered()
    user_id = pair["user"]["id"]
    from app.quota import grant

    grant(user_id, 5, kind="admin", reason="test funding")
    pipeline = new_pipeline([{"id": "a", "type": "sim", "duration_ms": 0}])
    flows.disable(user_id)

    reply = flows.call(
        "tasks",
        "POST",
        "/tasks",
        body={"pipeline_id": pipeline, "input": {}},
        token=pair["access_token"],
    )
    assert _code(reply) == (403, "ACCOUNT_DISABLED")
    assert counters(user_id) == (5, 0)


def test_logout_ends_the_access_token_of_its_session(flows: Flows) -> None:
    pair = flows.registered()
    other = flows.login(pair["user"]["phone"]).json()
    reply = flows.call("auth-logout", "POST", "/auth/logout", body={}, token=pair["access_token"])
    assert reply.status == 204
    assert _code(flows.me(pair["access_token"])) == (401, "AUTH_SESSION_ENDED")
    assert flows.me(other["access_token"]).status == 200


def test_logout_all_ends_every_access_token(flows: Flows) -> None:
    first = flows.registered()
    others = [flows.login(first["user"]["phone"]).json() for _ in range(2)]
    reply = flows.call(
        "auth-logout-all", "POST", "/auth/logout-all", body={}, token=first["access_token"]
    )
    assert reply.status == 204
    for pair in [first, *others]:
        assert _code(flows.me(pair["access_token"])) == (401, "AUTH_SESSION_ENDED")


def test_refresh_reuse_ends_the_access_tokens_of_the_session(flows: Flows) -> None:
    first = flows.registered()
    second = flows.refresh(first["refresh_token"]).json()
    claims = tokens.decode(first["refresh_token"], "refresh")
    get_redis().delete(sessions.grace_key(claims["sub"], claims["sid"], claims["jti"]))
    assert _code(flows.refresh(first["refresh_token"])) == (401, "AUTH_REFRESH_REUSED")
    for token in (first["access_token"], second["access_token"]):
        assert _code(flows.me(token)) == (401, "AUTH_SESSION_ENDED")


def test_while_redis_cannot_answer_the_database_authorizes(flows: Flows) -> None:
    live = flows.registered()
    disabled = flows.registered()
    logged_out = flows.registered()
    flows.disable(disabled["user"]["id"])
    flows.call("auth-logout", "POST", "/auth/logout", body={}, token=logged_out["access_token"])

    with redis_down():
        served = flows.me(live["access_token"])
        assert served.status == 200 and served.json()["id"] == live["user"]["id"]
        assert _code(flows.me(disabled["access_token"])) == (403, "ACCOUNT_DISABLED")
        assert _code(flows.me(logged_out["access_token"])) == (401, "AUTH_SESSION_ENDED")


def test_while_redis_cannot_answer_the_token_claim_is_never_trusted(flows: Flows) -> None:
    a = _registered_admin(flows)
    d = _registered_admin(flows)
    assert _patch(flows, d["user"]["id"], a["access_token"], role="user").status == 200
    with redis_down():
        assert _code(_patch(flows, d["user"]["id"], d["access_token"], role="admin")) == (
            403,
            "FORBIDDEN",
        )


def test_a_change_redis_cannot_take_is_refused_and_a_stale_entry_cannot_undo_it(
    flows: Flows,
) -> None:
    a = _registered_admin(flows)
    d = _registered_admin(flows)
    d_id = d["user"]["id"]
    assert flows.me(d["access_token"]).json()["role"] == "admin"  # cached as admin

    with redis_down():
        refused = _patch(flows, d_id, a["access_token"], role="user", disabled=True)
    assert _code(refused) == (503, "SERVICE_UNAVAILABLE")
    assert (_row(d_id)["role"], _row(d_id)["disabled"]) == ("admin", False)

    # Redis is back with its entry: it agrees with the database, and the change, made
    # again, holds at once.
    assert flows.me(d["access_token"]).json()["role"] == "admin"
    assert _patch(flows, d_id, a["access_token"], role="user", disabled=True).status == 200
    assert _code(flows.me(d["access_token"])) == (403, "ACCOUNT_DISABLED")


def test_a_load_that_read_before_the_change_cannot_store_after_it(clean_redis: Any) -> None:
    """The hold behind every change of role or state: a profile load that read the row
    before the change commits never stores it, and if the drop after the commit never
    reaches Redis, the next load still reads the database rather than a stale entry."""
    user_id = new_user(role="admin")
    key = profiles.key(user_id)
    loading, release = threading.Event(), threading.Event()
    loaded: list[Any] = []

    def slow_load() -> dict[str, Any] | None:
        with transaction() as tx:
            row = tx.execute(select(users).where(users.c.id == user_id)).mappings().one()
        loading.set()
        release.wait(5)
        return profiles.of_row(row)  # read before the change

    reader = threading.Thread(target=lambda: loaded.append(cache.get_or_set(key, slow_load, 60)))
    reader.start()
    assert loading.wait(5)
    with transaction() as tx:
        tx.execute(users.update().where(users.c.id == user_id).values(role="user"))
        cache.hold(key)  # as profiles.hold does; the drop after the commit is left out
    release.set()
    reader.join(5)

    assert loaded[0]["role"] == "admin"  # the reader got what it read
    assert get_redis().get(cache.redis_key(key)) is None  # and stored nothing
    assert profiles.load(user_id)["role"] == "user"  # type: ignore[index]


def test_a_hold_outlasts_another_changes_drop(clean_redis: Any) -> None:
    """Another change of the user (a task's quota, a profile field) that commits while a
    change of role holds the profile drops the entry after its commit; the hold stands all
    the same. A load that reads the row before the held change commits stores nothing, so
    if the held change's own drop never reaches Redis, the next load still reads the
    database rather than the role the user had."""
    user_id = new_user(role="admin")
    key = profiles.key(user_id)
    with transaction() as tx:
        tx.execute(users.update().where(users.c.id == user_id).values(role="user"))
        cache.hold(key)  # as profiles.hold does; the drop after the commit is left out
        profiles.forget(user_id)  # another change of the user commits meanwhile
        assert profiles.load(user_id)["role"] == "admin"  # type: ignore[index]
    assert get_redis().get(cache.redis_key(key)) is None
    assert profiles.load(user_id)["role"] == "user"  # type: ignore[index]


def test_an_ended_session_is_kept_in_the_database_until_its_tokens_expire(
    flows: Flows,
) -> None:
    pair = flows.registered()
    sid = tokens.decode(pair["access_token"], "access")["sid"]
    flows.call("auth-logout", "POST", "/auth/logout", body={}, token=pair["access_token"])
    from app.identity import ended

    def kept() -> bool:
        with transaction() as tx:
            return ended.holds(tx, sid)

    assert kept()
    ended.purge()
    assert kept()  # its access token may still be presented
    with transaction() as tx:
        tx.execute(
            ended_sessions.update()
            .where(ended_sessions.c.sid == sid)
            .values(ended_at=utcnow() - _ttl_and_skew())
        )
    assert ended.purge() >= 1
    assert not kept()


def _ttl_and_skew() -> Any:
    from datetime import timedelta

    from app.config import get_settings
    from app.identity.ended import CLOCK_SKEW_S

    return timedelta(seconds=get_settings().access_token_ttl_s + CLOCK_SKEW_S + 1)


def test_users_me_reads_the_session_and_the_profile_and_nothing_else(
    flows: Flows, clean_redis: Any
) -> None:
    """Revocation costs `GET /users/me` no round trip: the two reads it makes are the
    session's liveness and the cached profile it answers with (pipelined together)."""
    pair = flows.registered()
    user_id = pair["user"]["id"]
    sid = tokens.decode(pair["access_token"], "access")["sid"]
    assert flows.me(pair["access_token"]).status == 200  # the profile is cached now
    with commands_sent(clean_redis) as seen:
        assert flows.me(pair["access_token"]).status == 200
    assert seen == [
        f"EXISTS {sessions.session_key(user_id, sid)}",
        f"GET {cache.redis_key(profiles.key(user_id))}",
    ]


def test_a_sign_in_overlapping_a_disable_leaves_no_session_to_revive(
    flows: Flows, monkeypatch: Any
) -> None:
    """The admin disables the account while a password login is past its read of the user
    row (here: during its bcrypt check) and before its session starts: the login is refused
    and no session of the user is left for enabling the account to bring back."""
    phone = new_phone()
    user_id = flows.registered(phone)["user"]["id"]
    check = bcrypt.checkpw
    admin = flows.admin_token()

    def disabled_meanwhile(password: bytes, hashed: bytes) -> bool:
        right = check(password, hashed)
        monkeypatch.setattr(bcrypt, "checkpw", check)
        assert _patch(flows, user_id, admin, disabled=True).status == 200
        return right

    monkeypatch.setattr(bcrypt, "checkpw", disabled_meanwhile)
    login = flows.login(phone)
    assert (login.status, login.json()["code"]) == (403, "ACCOUNT_DISABLED")
    assert _patch(flows, user_id, admin, disabled=False).status == 200
    assert sessions.active(user_id) == set()


def test_enabling_ends_the_sessions_a_disable_could_not_end(flows: Flows) -> None:
    """A disable commits the flag, then ends the sessions; an instance that dies between the
    two (or a Redis that fails there) leaves the account disabled with its sessions still
    in Redis. Enabling it must not bring them back: they are ended before it commits."""
    pair = flows.registered()
    user_id = pair["user"]["id"]
    admin = flows.admin_token()
    # The account as such a disable leaves it: the flag committed, the sessions untouched.
    with transaction() as tx:
        tx.execute(users.update().where(users.c.id == user_id).values(disabled=True))
    profiles.forget(user_id)
    assert _code(flows.me(pair["access_token"])) == (403, "ACCOUNT_DISABLED")
    assert _patch(flows, user_id, admin, disabled=False).status == 200
    assert _code(flows.me(pair["access_token"])) == (401, "AUTH_SESSION_ENDED")
    assert _code(flows.refresh(pair["refresh_token"])) == (401, "AUTH_REFRESH_INVALID")
    assert sessions.active(user_id) == set()
    # An account enabled already is left alone: enabling it again ends nothing.
    again = flows.login(pair["user"]["phone"]).json()
    assert _patch(flows, user_id, admin, disabled=False).status == 200
    assert flows.me(again["access_token"]).status == 200
