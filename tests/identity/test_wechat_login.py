"""WeChat login against the fake jscode2session server, and the sandbox."""

from __future__ import annotations

import json
import os
import secrets
import textwrap
import threading
import time

from sqlalchemy import func, select, text

from app.config import get_settings
from app.db.engine import get_engine
from app.db.tables import users
from app.db.transaction import transaction
from tests.identity.conftest import Flows, new_ip
from tests.support.function_url import Reply, context, event
from tests.support.functions import fresh_instance
from tests.support.local_cloud import wait_for
from tests.support.logs import capture_logs
from tests.support.net import closed_port
from tests.support.settings import settings_env


def _code() -> str:
    return "code-" + secrets.token_hex(8)


def _openid() -> str:
    return "o" + secrets.token_hex(12)


def _rows(openid: str) -> list[dict]:
    with transaction() as conn:
        return [
            dict(r)
            for r in conn.execute(select(users).where(users.c.wechat_openid == openid)).mappings()
        ]


def test_first_login_creates_the_user_with_profile_and_unionid(flows: Flows) -> None:
    code, openid = _code(), _openid()
    flows.wechat.code(code, openid=openid, unionid="union-1")
    reply = flows.wechat_login(code, nickname="Wei", avatar="https://img.example/a.png")
    assert reply.status == 200, reply.body
    data = reply.json()
    assert data["is_new_user"] is True and data["user"]["phone"] is None
    assert (
        data["user"]["nickname"] == "Wei" and data["user"]["avatar"] == "https://img.example/a.png"
    )
    (row,) = _rows(openid)
    assert row["wechat_unionid"] == "union-1"
    sent = flows.wechat.requests[-1]
    assert sent["appid"] == flows.wechat.appid and sent["js_code"] == code
    assert sent["grant_type"] == "authorization_code"


def test_next_login_finds_the_user_and_only_fills_empty_fields(flows: Flows) -> None:
    openid = _openid()
    first_code, second_code = _code(), _code()
    flows.wechat.code(first_code, openid=openid)
    flows.wechat.code(second_code, openid=openid, unionid="union-2")
    first = flows.wechat_login(first_code, nickname="Old").json()
    second = flows.wechat_login(second_code, nickname="New", avatar="https://img.example/b.png")
    data = second.json()
    assert data["is_new_user"] is False and data["user"]["id"] == first["user"]["id"]
    assert data["user"]["nickname"] == "Old"
    assert data["user"]["avatar"] == "https://img.example/b.png"
    assert _rows(openid)[0]["wechat_unionid"] == "union-2"
    me = flows.me(data["access_token"]).json()
    assert me["avatar"] == "https://img.example/b.png"


def test_replies_of_an_unexpected_shape_are_502(flows: Flows) -> None:
    for reply in (
        [],
        "ok",
        7,
        {"errcode": "x"},
        {"errcode": 40163.0},
        {"errcode": True},
        {"errcode": 0, "openid": 12345},
        {"openid": ["o1"]},
    ):
        code = _code()
        flows.wechat.code(code, reply=reply)
        answer = flows.wechat_login(code)
        assert (answer.status, answer.json()["code"]) == (502, "WECHAT_UNAVAILABLE"), reply


def test_errcodes_map_to_api_errors(flows: Flows) -> None:
    cases = {
        40029: (400, "WECHAT_CODE_INVALID"),
        45011: (429, "WECHAT_RATE_LIMITED"),
        40226: (403, "WECHAT_USER_BLOCKED"),
        40013: (502, "WECHAT_UNAVAILABLE"),
    }
    for errcode, expected in cases.items():
        code = _code()
        flows.wechat.code(code, errcode=errcode)
        reply = flows.wechat_login(code)
        assert (reply.status, reply.json()["code"]) == expected, errcode
    unknown = flows.wechat_login(_code())
    assert (unknown.status, unknown.json()["code"]) == (400, "WECHAT_CODE_INVALID")


def test_a_used_code_is_invalid(flows: Flows) -> None:
    code = _code()
    flows.wechat.code(code, openid=_openid())
    assert flows.wechat_login(code).status == 200
    reply = flows.wechat_login(code)
    assert (reply.status, reply.json()["code"]) == (400, "WECHAT_CODE_INVALID")


def test_busy_is_retried_once(flows: Flows) -> None:
    code = _code()
    flows.wechat.code(code, openid=_openid(), busy=1)
    before = len(flows.wechat.requests)
    assert flows.wechat_login(code).status == 200
    assert len(flows.wechat.requests) - before == 2

    code = _code()
    flows.wechat.code(code, openid=_openid(), busy=2)
    before = len(flows.wechat.requests)
    reply = flows.wechat_login(code)
    assert (reply.status, reply.json()["code"]) == (502, "WECHAT_UNAVAILABLE")
    assert len(flows.wechat.requests) - before == 2


def test_an_answer_past_its_bound_is_502_and_read_no_further(flows: Flows) -> None:
    """An answer that goes on (here valid JSON, then 32 MiB of spaces) is cut at its bound
    and is WeChat's failure, as an unreadable one is: nothing is signed in."""
    code, openid = _code(), _openid()
    flows.wechat.code(code, openid=openid)
    flows.wechat.pad("/sns/jscode2session", 32 * 1024 * 1024)
    try:
        with capture_logs() as logs:
            reply = flows.wechat_login(code)
    finally:
        flows.wechat.pad("/sns/jscode2session", 0)
    assert (reply.status, reply.json()["code"]) == (502, "WECHAT_UNAVAILABLE")
    assert _rows(openid) == []
    assert logs.where(message="jscode2session reply too large")
    assert wait_for(lambda: "/sns/jscode2session" in flows.wechat.cut_off)


def test_unreachable_wechat_is_502(flows: Flows) -> None:
    with settings_env(WECHAT_API_BASE=f"http://127.0.0.1:{closed_port()}"):
        reply = flows.wechat_login(_code())
    assert (reply.status, reply.json()["code"]) == (502, "WECHAT_UNAVAILABLE")


def test_an_unknown_invite_code_refuses_a_new_user_and_creates_nothing(flows: Flows) -> None:
    code, openid = _code(), _openid()
    flows.wechat.code(code, openid=openid)
    reply = flows.wechat_login(code, invite_code="ZZZZZZZZ")
    assert (reply.status, reply.json()["code"]) == (400, "REFERRER_INVALID")
    assert _rows(openid) == []
    referrer = flows.registered()["user"]
    code = _code()
    flows.wechat.code(code, openid=openid)
    data = flows.wechat_login(code, invite_code=referrer["invite_code"]).json()
    assert data["user"]["referrer_id"] == referrer["id"]


def test_ten_concurrent_first_logins_make_one_user(flows: Flows) -> None:
    openid = _openid()
    codes = [_code() for _ in range(10)]
    for code in codes:
        flows.wechat.code(code, openid=openid)
    barrier = threading.Barrier(10)
    replies: list = [None] * 10

    def login(i: int) -> None:
        barrier.wait()
        replies[i] = flows.wechat_login(codes[i])

    threads = [threading.Thread(target=login, args=(i,)) for i in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(r.status == 200 for r in replies), [r.body for r in replies]
    assert [r.json()["is_new_user"] for r in replies].count(True) == 1
    assert len({r.json()["user"]["id"] for r in replies}) == 1
    with transaction() as conn:
        count = conn.execute(
            select(func.count()).select_from(users).where(users.c.wechat_openid == openid)
        ).scalar()
    assert count == 1


def test_the_sandbox_gives_a_stable_openid_per_code(flows: Flows) -> None:
    with settings_env(WECHAT_API_BASE="", APP_ENV="local"):
        before = len(flows.wechat.requests)
        code = _code()
        first = flows.wechat_login(code).json()
        again = flows.wechat_login(code).json()
        other = flows.wechat_login(_code()).json()
    assert len(flows.wechat.requests) == before
    assert first["is_new_user"] is True and again["is_new_user"] is False
    assert again["user"]["id"] == first["user"]["id"] != other["user"]["id"]


def test_disabled_wechat_user_is_403(flows: Flows) -> None:
    openid = _openid()
    code = _code()
    flows.wechat.code(code, openid=openid)
    user_id = flows.wechat_login(code).json()["user"]["id"]
    flows.disable(user_id)
    code = _code()
    flows.wechat.code(code, openid=openid)
    reply = flows.wechat_login(code)
    assert (reply.status, reply.json()["code"]) == (403, "ACCOUNT_DISABLED")


def _waiting_user_updates() -> int:
    """UPDATEs of users running in this test database (here: waiting for the row lock)."""
    query = text(
        "SELECT COUNT(*) FROM information_schema.PROCESSLIST"
        " WHERE DB = DATABASE() AND ID <> CONNECTION_ID() AND INFO LIKE 'UPDATE users %'"
    )
    with transaction() as conn:
        return int(conn.execute(query).scalar() or 0)


def test_concurrent_logins_fill_an_empty_profile_once(flows: Flows) -> None:
    openid = _openid()
    first = _code()
    flows.wechat.code(first, openid=openid)
    user_id = flows.wechat_login(first).json()["user"]["id"]
    logins = 10
    codes = [_code() for _ in range(logins)]
    for code in codes:
        flows.wechat.code(code, openid=openid)
    replies: list = [None] * logins

    def login(i: int) -> None:
        replies[i] = flows.wechat_login(
            codes[i], nickname=f"Name {i}", avatar=f"https://img.example/{i}.png"
        )

    threads = [threading.Thread(target=login, args=(i,)) for i in range(logins)]
    # Holding the row lock lets every login read the empty profile and then wait to write:
    # the widest the race can be.
    with get_engine().connect() as holder:
        holder.execute(select(users.c.id).where(users.c.id == user_id).with_for_update())
        for t in threads:
            t.start()
        deadline = time.monotonic() + 30
        while _waiting_user_updates() < logins and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _waiting_user_updates() == logins
        holder.commit()
    for t in threads:
        t.join()
    assert all(r.status == 200 for r in replies), [r.body for r in replies]
    (row,) = _rows(openid)
    assert row["nickname"] and row["avatar"]
    # The first fill holds: every login answers with the profile that was kept.
    assert {r.json()["user"]["nickname"] for r in replies} == {row["nickname"]}
    assert {r.json()["user"]["avatar"] for r in replies} == {row["avatar"]}


def test_without_wechat_settings_only_a_laptop_gets_the_sandbox(flows: Flows) -> None:
    # A staging deploy without WECHAT_API_BASE used to sign in anyone with any code, each
    # new code a new account holding SIGNUP_QUOTA.
    def sandboxed() -> int:
        with transaction() as conn:
            query = select(func.count()).select_from(users)
            return int(conn.execute(query.where(users.c.wechat_openid.like("sandbox-%"))).scalar())

    before = sandboxed()
    with settings_env(WECHAT_API_BASE="", APP_ENV="test", SIGNUP_QUOTA="5"):
        calls = len(flows.wechat.requests)
        reply = flows.wechat_login(_code())
    assert (reply.status, reply.json()["code"]) == (502, "WECHAT_UNAVAILABLE")
    assert len(flows.wechat.requests) == calls
    assert sandboxed() == before


def _sign_in_from(flows: Flows, ip: str) -> Reply:
    """A WeChat sign-in of a new user from `ip`."""
    code = _code()
    flows.wechat.code(code, openid=_openid())
    return flows.call(
        "auth-wechat-login", "POST", "/auth/wechat-login", body={"code": code}, source_ip=ip
    )


def test_wechat_sign_ins_are_limited_per_ip(flows: Flows) -> None:
    with settings_env(WECHAT_LOGIN_PER_IP_PER_HOUR="2"):
        ip = new_ip()
        calls = len(flows.wechat.requests)
        assert [_sign_in_from(flows, ip).status for _ in range(2)] == [200, 200]
        refused = _sign_in_from(flows, ip)
        assert (refused.status, refused.json()["code"]) == (429, "RATE_LIMITED")
        assert int(refused.header("Retry-After")) > 0
        assert len(flows.wechat.requests) == calls + 2  # the refused one never reached WeChat
        assert _sign_in_from(flows, new_ip()).status == 200


def test_at_log_level_debug_no_line_carries_the_app_secret_or_the_login_code(
    flows: Flows,
) -> None:
    """jscode2session takes the app secret and the user's code in its query string, which
    the HTTP library writes at DEBUG: an instance at LOG_LEVEL=DEBUG keeps the app's debug
    lines and none of the libraries'."""
    code = "wx-" + secrets.token_hex(8)
    flows.wechat.code(code, openid="o" + secrets.token_hex(12))
    script = textwrap.dedent(
        """
        import json, logging, sys
        import index
        logging.getLogger("app.check").debug("the app's own debug line")
        answer = index.main_handler(json.loads(sys.argv[1]), json.loads(sys.argv[2]))
        assert answer["statusCode"] == 200, answer
        """
    )
    sent = event("POST", "/auth/wechat-login", body={"code": code})
    child = fresh_instance(
        "auth-wechat-login",
        script,
        json.dumps(sent),
        json.dumps(context("auth-wechat-login")),
        env={**os.environ, "LOG_LEVEL": "DEBUG"},
    )
    secret = get_settings().wechat_secret.get_secret_value()
    output = child.stdout + child.stderr
    assert "the app's own debug line" in output
    assert secret not in output and code not in output


def test_wechat_sign_ins_count_an_ipv6_client_by_its_64(flows: Flows) -> None:
    with settings_env(WECHAT_LOGIN_PER_IP_PER_HOUR="1"):
        prefix = f"2001:db8:{secrets.randbelow(65536):x}:{secrets.randbelow(65536):x}"
        assert _sign_in_from(flows, f"{prefix}::1").status == 200
        refused = _sign_in_from(flows, f"{prefix}::2")
        assert (refused.status, refused.json()["code"]) == (429, "RATE_LIMITED")
