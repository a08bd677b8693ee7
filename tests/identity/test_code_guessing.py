"""Guessing SMS codes: what a wrong code tells (nothing but that it is wrong), and what
bounds the guesses."""

from __future__ import annotations

import secrets

from tests.identity.conftest import Flows, new_phone
from tests.support.settings import settings_env


def _wrong(code: str) -> str:
    return f"{(int(code) + 1) % 1_000_000:06d}"


def _answer(flows: Flows, phone: str, code: str, **extra: str) -> tuple[int, str]:
    reply = flows.register(phone, code=code, **extra)
    return reply.status, reply.json().get("code", "")


def test_without_the_phones_code_no_referrer_or_invite_code_is_judged(flows: Flows) -> None:
    """The invite code and the referrer id were judged before the code: anyone could learn
    which invite codes and user ids exist, and which users are disabled, with no code."""
    referrer = flows.registered()["user"]
    disabled = flows.registered()["user"]
    flows.disable(disabled["id"])
    cases = [
        {},
        {"invite_code": referrer["invite_code"]},
        {"invite_code": "ZZZZZZZZ"},
        {"referrer_id": referrer["id"]},
        {"referrer_id": "no-such-user"},
        {"referrer_id": disabled["id"]},
        {"referrer_id": referrer["id"], "invite_code": disabled["invite_code"]},
    ]
    asked = new_phone()
    code = flows.code_for(asked, "register")
    wrong = _wrong(code)
    answers = {
        (phone, tuple(extra.items())): _answer(flows, phone, guess, **extra)
        for extra in cases
        for phone, guess in ((asked, wrong), (new_phone(), "123456"))
    }
    assert set(answers.values()) == {(400, "SMS_CODE_INVALID")}, answers


def test_a_right_code_with_a_bad_invite_is_referrer_invalid_and_tries_few(
    flows: Flows,
) -> None:
    """The right code with a bad invite code is 400 REFERRER_INVALID and the code is kept
    for the request put right; each such refusal is a wrong try of the code, so one code
    cannot be used to try invite codes without end."""
    referrer = flows.registered()["user"]
    phone = new_phone()
    code = flows.code_for(phone, "register")
    assert _answer(flows, phone, code, invite_code="ZZZZZZZZ") == (400, "REFERRER_INVALID")
    reply = flows.register(phone, code=code, invite_code=referrer["invite_code"])
    assert reply.status == 201, reply.body
    assert reply.json()["user"]["referrer_id"] == referrer["id"]

    other = new_phone()
    code = flows.code_for(other, "register")
    answers = [_answer(flows, other, code, referrer_id=f"no-such-user-{n}") for n in range(5)]
    assert set(answers) == {(400, "REFERRER_INVALID")}
    # The fifth refusal burnt it.
    assert _answer(flows, other, code, invite_code=referrer["invite_code"]) == (
        400,
        "SMS_CODE_INVALID",
    )


def test_wrong_codes_per_ip_are_bounded_over_every_phone(flows: Flows) -> None:
    """Each code allows five guesses; one address cycling over many phones, each with a
    code, had no bound at all."""
    ip = "192.0.2.120"
    with settings_env(SMS_CODE_FAILURES_PER_IP_PER_HOUR="3"):
        for _ in range(2):
            phone = new_phone()
            reply = flows.code_login(phone, _wrong(flows.code_for(phone)), ip=ip)
            assert (reply.status, reply.json()["code"]) == (400, "SMS_CODE_INVALID")
        phone = new_phone()
        wrong = _wrong(flows.code_for(phone, "register"))
        assert flows.register(phone, code=wrong, ip=ip).json()["code"] == "SMS_CODE_INVALID"

        phone = new_phone()
        code = flows.code_for(phone)
        refused = flows.code_login(phone, code, ip=ip)
        assert (refused.status, refused.json()["code"]) == (429, "AUTH_TOO_MANY_ATTEMPTS")
        assert int(refused.header("Retry-After")) > 0
        other = new_phone()
        refused = flows.register(other, code=flows.code_for(other, "register"), ip=ip)
        assert (refused.status, refused.json()["code"]) == (429, "AUTH_TOO_MANY_ATTEMPTS")
        # The refusal looked at no code: it signs in from elsewhere.
        assert flows.code_login(phone, code, ip="192.0.2.121").status == 200


def test_right_codes_are_not_counted_against_the_ip(flows: Flows) -> None:
    ip = "192.0.2.122"
    with settings_env(SMS_CODE_FAILURES_PER_IP_PER_HOUR="2"):
        for _ in range(3):
            assert flows.code_login(new_phone(), ip=ip).status == 200
        assert flows.register(ip=ip).status == 201
        referrer_refused = flows.register(ip=ip, invite_code="ZZZZZZZZ")
        assert referrer_refused.json()["code"] == "REFERRER_INVALID"
        phone = new_phone()
        reply = flows.code_login(phone, _wrong(flows.code_for(phone)), ip=ip)
        assert (reply.status, reply.json()["code"]) == (400, "SMS_CODE_INVALID")


def test_wrong_codes_per_ip_count_an_ipv6_client_by_its_64(flows: Flows) -> None:
    prefix = f"2001:db8:{secrets.randbelow(65536):x}:{secrets.randbelow(65536):x}"
    with settings_env(SMS_CODE_FAILURES_PER_IP_PER_HOUR="2"):
        for host in ("::1", "::2"):
            phone = new_phone()
            reply = flows.code_login(phone, _wrong(flows.code_for(phone)), ip=prefix + host)
            assert reply.json()["code"] == "SMS_CODE_INVALID"
        reply = flows.code_login(new_phone(), "123456", ip=f"{prefix}:ffff::3")
        assert (reply.status, reply.json()["code"]) == (429, "AUTH_TOO_MANY_ATTEMPTS")
