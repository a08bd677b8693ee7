"""No password, password hash, SMS code, WeChat session_key or token reaches a log line, and
none but the caller's own tokens reaches a response: the sign-in flows run with stdout,
stderr and every logger captured, then everything is searched."""

from __future__ import annotations

import logging
import secrets

from sqlalchemy import select

from app.db.tables import users
from app.db.transaction import transaction
from tests.identity.conftest import PASSWORD, Flows, new_phone
from tests.support.functions import handler
from tests.support.logs import capture_logs


def test_secrets_appear_in_no_log_line_and_no_response(flows: Flows, capfd) -> None:
    replies = []
    phone, other = new_phone(), new_phone()
    wechat_code, openid = "wx-" + secrets.token_hex(6), "o" + secrets.token_hex(10)
    flows.wechat.code(wechat_code, openid=openid, unionid="u-" + secrets.token_hex(4))
    # Built before the capture: building a handler configures the root logger's handlers.
    for name in (
        "auth-register",
        "auth-login",
        "auth-sms-code",
        "auth-wechat-login",
        "auth-refresh",
        "users-me",
    ):
        handler(name)
    with capture_logs(logging.DEBUG) as logs:
        replies.append(flows.register(phone))
        pair = replies[-1].json()
        replies.append(flows.login(phone))
        replies.append(flows.login(phone, "a wrong password"))
        replies.append(flows.login(other, "a wrong password"))
        replies.append(flows.code_login(other))
        code = flows.code_for(phone)
        wrong = f"{(int(code) + 1) % 1_000_000:06d}"
        replies.append(flows.code_login(phone, wrong))
        replies.append(flows.code_login(phone, code))
        replies.append(flows.wechat_login(wechat_code))
        replies.append(flows.refresh(pair["refresh_token"]))
        replies.append(flows.refresh(pair["refresh_token"]))
        replies.append(flows.me(pair["access_token"]))
    out, err = capfd.readouterr()
    assert all(r.status < 500 for r in replies), [r.body for r in replies]

    with transaction() as conn:
        hashes = [
            h
            for h in conn.execute(
                select(users.c.password_hash).where(users.c.phone.in_([phone, other]))
            ).scalars()
            if h
        ]
    sms_codes = [c.params["TemplateParamSet"][0] for c in flows.tencent.calls_of("SendSms")]
    session_keys = list(flows.wechat.session_keys)
    issued = [
        t
        for r in replies
        if r.status == 200 and "access_token" in r.json()
        for t in (r.json()["access_token"], r.json()["refresh_token"])
    ]
    assert hashes and sms_codes and session_keys and issued

    logged = logs.text + out + err
    assert logs.lines  # the flows did log
    for secret in [
        PASSWORD,
        "a wrong password",
        *hashes,
        *sms_codes,
        wrong,
        *session_keys,
        *issued,
    ]:
        assert secret not in logged
    for reply in replies:
        for secret in [PASSWORD, *hashes, *session_keys, code, wrong]:
            assert secret not in reply.body
        assert "password_hash" not in reply.body and "session_key" not in reply.body
