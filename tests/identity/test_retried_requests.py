"""A phone on a flaky network sends a sign-in request again after its answer was lost, at
once or while the first is still in flight: the state is the first request's and the retry's
answer is one a client can act on (never a second SMS, a second account or a 500)."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta, timezone

from sqlalchemy import func, select

from app.db.engine import get_engine
from app.db.tables import users
from app.identity import sms, tokens
from app.redis_client import get_redis, tag
from tests.identity.conftest import Flows, new_ip, new_phone
from tests.support.at_once import run_at_once
from tests.support.function_url import Reply
from tests.support.sessions import is_live


def _outcomes(replies: list[Reply]) -> Counter[tuple[int, str | None]]:
    return Counter((r.status, r.json().get("code") if r.body else None) for r in replies)


def _accounts(phone: str) -> int:
    with get_engine().connect() as conn:
        return int(conn.execute(select(func.count()).where(users.c.phone == phone)).scalar_one())


def _sent_to(flows: Flows, phone: str) -> int:
    return sum(phone in c.params["PhoneNumberSet"] for c in flows.tencent.calls_of("SendSms"))


def test_a_code_request_sent_again_sends_one_sms_and_keeps_its_code(flows: Flows) -> None:
    phone, ip = new_phone(), new_ip()
    replies = run_at_once(3, lambda _: flows.sms(phone, ip=ip))
    assert _outcomes(replies) == {(200, None): 1, (429, "SMS_RATE_LIMITED"): 2}
    again = flows.sms(phone, ip=ip)
    assert (again.status, again.json()["code"]) == (429, "SMS_RATE_LIMITED")
    assert int(again.header("Retry-After") or 0) > 0
    # One message, one of the phone's day, and the code it carried still signs in.
    assert _sent_to(flows, phone) == 1
    day = datetime.now(timezone(timedelta(hours=8)))
    assert get_redis().get(f"sms:day:{tag(phone)}:{day:%Y%m%d}") == "1"
    assert flows.code_login(phone, flows.last_code(phone)).status == 200


def test_a_code_login_sent_again_makes_one_account_and_the_retry_is_told_the_code_is_used(
    flows: Flows,
) -> None:
    phone = new_phone()
    code = flows.code_for(phone)
    replies = run_at_once(3, lambda _: flows.code_login(phone, code))
    assert _outcomes(replies) == {(200, None): 1, (400, "SMS_CODE_INVALID"): 2}
    assert [r.json()["is_new_user"] for r in replies if r.status == 200] == [True]
    assert _accounts(phone) == 1


def test_a_registration_sent_again_makes_one_account_that_its_password_signs_in_to(
    flows: Flows,
) -> None:
    phone = new_phone()
    code = flows.code_for(phone, "register")
    replies = run_at_once(3, lambda _: flows.register(phone, code=code))
    assert _outcomes(replies) == {(201, None): 1, (400, "SMS_CODE_INVALID"): 2}
    late = flows.register(phone, code=code)
    assert (late.status, late.json()["code"]) == (400, "SMS_CODE_INVALID")
    assert _accounts(phone) == 1
    # What the client does next: a new register code tells it the phone has its account.
    get_redis().delete(sms.cooldown_key(phone))
    assert flows.sms(phone, "register").json()["code"] == "PHONE_ALREADY_REGISTERED"
    assert flows.login(phone).status == 200


def test_a_logout_sent_again_ends_the_session_once_and_the_retry_is_told_it_ended(
    flows: Flows,
) -> None:
    pair = flows.registered()
    other = flows.login(pair["user"]["phone"]).json()
    claims = tokens.decode(pair["access_token"], "access")

    def logout() -> Reply:
        token = pair["access_token"]
        return flows.call("auth-logout", "POST", "/auth/logout", body={}, token=token)

    replies = run_at_once(3, lambda _: logout())
    assert set(_outcomes(replies)) <= {(204, None), (401, "AUTH_SESSION_ENDED")}, replies
    assert any(r.status == 204 for r in replies)
    again = logout()
    assert (again.status, again.json()["code"]) == (401, "AUTH_SESSION_ENDED")
    assert not is_live(claims["sub"], claims["sid"])
    assert flows.me(other["access_token"]).status == 200
