"""Guessing SMS codes: what a wrong code tells (nothing but that it is wrong), and what
bounds the guesses."""

from __future__ import annotations

from tests.identity.conftest import Flows, new_phone


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
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
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
