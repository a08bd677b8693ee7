"""The password login lock of one phone over time (API.md: LOGIN_MAX_FAILURES failures
within LOGIN_LOCK_S lock password login until the window passes): no span of LOGIN_LOCK_S
holds more failures than the limit, wherever the span starts. The window is made 4 s here,
so its passing is waited for rather than faked."""

from __future__ import annotations

import time

from tests.identity.conftest import PASSWORD, Flows
from tests.support.settings import settings_env

LOCK_S = 4
LOCKED = (429, "AUTH_TOO_MANY_ATTEMPTS")


def _wrong(flows: Flows, phone: str) -> tuple[int, str]:
    return _answer(flows, phone, "wrong password")


def _answer(flows: Flows, phone: str, password: str = PASSWORD) -> tuple[int, str]:
    reply = flows.login(phone, password)
    return reply.status, reply.json().get("code", "")


def _sleep_until(moment: float) -> None:
    time.sleep(max(moment - time.monotonic(), 0))


def test_failures_at_a_windows_end_still_count_after_it(flows: Flows) -> None:
    """Four failures, then one near the window's end: once the first four have aged out, the
    fifth still counts, so only four more are let in before the lock. A window that started
    at the first failure would end whole and let five in: six within one window's span."""
    phone = flows.registered()["user"]["phone"]
    with settings_env(LOGIN_MAX_FAILURES="5", LOGIN_LOCK_S=str(LOCK_S)):
        for _ in range(4):
            assert _wrong(flows, phone)[0] == 401
        fourth = time.monotonic()
        _sleep_until(fourth + LOCK_S - 0.6)
        assert _wrong(flows, phone)[0] == 401
        fifth = time.monotonic()
        _sleep_until(fourth + LOCK_S + 0.2)  # the first four are out of the window
        answers = [_wrong(flows, phone) for _ in range(5)]
        assert time.monotonic() < fifth + LOCK_S - 0.5, "too slow to tell: the fifth aged out"
        assert answers == [(401, "AUTH_INVALID_CREDENTIALS")] * 4 + [LOCKED]


def test_the_lock_lasts_until_its_oldest_failure_leaves_the_window(flows: Flows) -> None:
    """Retry-After is when the lock opens: waiting it lets one more guess in (the oldest
    failure has left the window), and a wrong one locks again at once."""
    phone = flows.registered()["user"]["phone"]
    with settings_env(LOGIN_MAX_FAILURES="2", LOGIN_LOCK_S=str(LOCK_S)):
        assert _wrong(flows, phone)[0] == 401
        time.sleep(1)
        assert _wrong(flows, phone)[0] == 401
        locked = flows.login(phone)  # even the right password
        assert (locked.status, locked.json()["code"]) == LOCKED
        retry_after = int(locked.header("Retry-After"))
        assert 1 <= retry_after <= LOCK_S - 1
        time.sleep(retry_after)
        assert _wrong(flows, phone)[0] == 401
        assert _answer(flows, phone) == LOCKED  # the failure just now filled it again
        assert flows.code_login(phone).status == 200  # code login stays open
