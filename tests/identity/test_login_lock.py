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


def _after_the_first_four_age_out(flows: Flows, lock_s: int) -> list[tuple[int, str]] | None:
    """Four failures, a fifth near the window's end, then five tries once the first four
    have aged out: their answers, or None when the tries did not all end while the fifth
    was still in the window (too slow to tell, on this window)."""
    phone = flows.registered()["user"]["phone"]
    with settings_env(LOGIN_MAX_FAILURES="5", LOGIN_LOCK_S=str(lock_s)):
        for _ in range(4):
            assert _wrong(flows, phone)[0] == 401
        fourth = time.monotonic()
        _sleep_until(fourth + lock_s - 0.6)
        fifth = time.monotonic()  # the fifth is counted no sooner than this
        assert _wrong(flows, phone)[0] == 401
        _sleep_until(fourth + lock_s + 0.2)  # the first four are out of the window
        answers = [_wrong(flows, phone) for _ in range(5)]
        return answers if time.monotonic() < fifth + lock_s - 0.1 else None


def test_failures_at_a_windows_end_still_count_after_it(flows: Flows) -> None:
    """Four failures, then one near the window's end: once the first four have aged out, the
    fifth still counts, so only four more are let in before the lock. A window that started
    at the first failure would end whole and let five in: six within one window's span.
    A machine too slow to try five times while the fifth counts tries again on a window
    three times as long, rather than fail."""
    answers = _after_the_first_four_age_out(flows, LOCK_S)
    if answers is None:
        answers = _after_the_first_four_age_out(flows, 3 * LOCK_S)
    assert answers is not None, "too slow to tell even on a 12 s window: the fifth aged out"
    assert answers == [(401, "AUTH_INVALID_CREDENTIALS")] * 4 + [LOCKED]


def test_the_lock_lasts_until_its_oldest_failure_leaves_the_window(flows: Flows) -> None:
    """Retry-After is when the lock opens: waiting it lets one more guess in (the oldest
    failure has left the window), and a wrong one locks again at once."""
    phone = flows.registered()["user"]["phone"]
    with settings_env(LOGIN_MAX_FAILURES="2", LOGIN_LOCK_S=str(LOCK_S)):
        assert _wrong(flows, phone)[0] == 401
        # Two seconds apart: waiting out the lock (up to a second more than the first
        # failure's time left, as Retry-After is rounded up) and guessing twice more fits
        # well inside the second failure's time, however slow the requests.
        time.sleep(2)
        assert _wrong(flows, phone)[0] == 401
        locked = flows.login(phone)  # even the right password
        assert (locked.status, locked.json()["code"]) == LOCKED
        retry_after = int(locked.header("Retry-After"))
        assert 1 <= retry_after <= LOCK_S - 1
        time.sleep(retry_after)
        assert _wrong(flows, phone)[0] == 401
        assert _answer(flows, phone) == LOCKED  # the failure just now filled it again
        assert flows.code_login(phone).status == 200  # code login stays open
