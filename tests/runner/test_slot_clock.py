"""Host slot leases are judged by one clock, Redis's, not each instance's own: two function
instances whose wall clocks differ by some seconds still count the same slots, so one whose
clock runs ahead never drops another's live slot, and one whose clock runs behind never
takes or renews a slot that is already lapsed for everyone else. Either would let more
calls than PIPELINE_HOST_CONCURRENCY reach the host. Nor does a holder judge how much of its
own slot's lease is left by its wall clock, which NTP may step by seconds: only by the time
that has passed since it took or renewed the slot.

The other instance is this process with its wall clock off (`tests.support.clock`)."""

from __future__ import annotations

import time

from app.pipeline.definition import HttpCall
from app.runner import calls, slots
from tests.support.clock import clock_off_by

SKEW_S = 30.0  # far more than any lease below, so no slow run blurs it
LEASE_S = 10.0


def test_an_instance_whose_clock_runs_ahead_leaves_another_s_live_slot_alone() -> None:
    host = "ahead.example:80"
    held = slots.acquire(host, cap=1, lease_s=LEASE_S)
    assert held is not None
    with clock_off_by(SKEW_S):
        assert slots.acquire(host, cap=1, lease_s=LEASE_S) is None
        assert slots.in_use(host) == 1
    slots.release(host, held)
    assert slots.in_use(host) == 0


def test_a_slot_taken_or_renewed_by_an_instance_whose_clock_runs_behind_is_counted() -> None:
    host = "behind.example:80"
    with clock_off_by(-SKEW_S):
        held = slots.acquire(host, cap=1, lease_s=LEASE_S)
        assert held is not None
    assert slots.acquire(host, cap=1, lease_s=LEASE_S) is None
    with clock_off_by(-SKEW_S):
        assert slots.renew(host, held, lease_s=LEASE_S)
    assert slots.acquire(host, cap=1, lease_s=LEASE_S) is None
    assert slots.in_use(host) == 1
    slots.release(host, held)
    assert slots.in_use(host) == 0


def test_a_holder_whose_clock_steps_back_does_not_keep_a_slot_whose_lease_ran_out() -> None:
    # The shortest lease a step's slot can have: its timeout plus SLOT_LEASE_MARGIN_S.
    step = HttpCall.model_validate(
        {"type": "http", "url": "http://stepped.example/r", "timeout_s": 0.1},
        context={"stored": True},
    )
    held, until = calls.fresh_slot(step)
    assert held is not None
    time.sleep(calls.slot_lease_s(step) + 0.2)  # the holder stalled: its lease ran out
    other = slots.acquire(step.host_key, cap=1, lease_s=LEASE_S)  # and another took it
    assert other is not None
    # Meanwhile the holder's wall clock was stepped back, as NTP may correct it.
    with clock_off_by(-SKEW_S):
        token, _ = calls.still_held(step, held, until)
    assert token is None  # not called with: the host would get a call over its cap
    slots.release(step.host_key, other)
    assert slots.in_use(step.host_key) == 0
