"""One call through a payment provider's SDK, ended within a bound on the whole call.

The SDKs' own timeouts (requests' for wechatpayv3, urlopen's for python-alipay-sdk) bound
each socket operation: a provider, or a proxy, that answers a byte at a time keeps the call
going as long as it likes, past the function's timeout, and the failure's answer and log
line are lost with the invocation. Neither SDK takes a session or transport of ours, so the
call runs inside `app.outbound.deadline.within`, which shuts down the sockets it opened once
the bound has passed. The bound is the adapter's timeout, or less when the invocation ends
sooner: what is left of it less ANSWER_MARGIN_S, the time the failure's log line and answer
need.

Imported by the adapters only (it imports urllib3, with `app.outbound.deadline`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from app.clock import run_budget_s
from app.db.conflicts import ANSWER_MARGIN_S
from app.outbound import deadline

T = TypeVar("T")


class OutOfTime(Exception):
    """The call did not end within `seconds` (0: the invocation had no time left for one),
    whatever the SDK then raised or returned (an answer cut short may even parse)."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"no answer within {seconds:g} s")
        self.seconds = seconds


def call(sdk_call: Callable[[], T], timeout_s: float) -> T:
    """`sdk_call()`, ended by `timeout_s` in all (less when the invocation ends sooner), or
    `OutOfTime`. What it raises in time is raised as it is."""
    seconds = max(run_budget_s(timeout_s, ANSWER_MARGIN_S), 0.0)
    if seconds == 0:
        raise OutOfTime(0)
    with deadline.within(seconds) as watch:
        try:
            result = sdk_call()
        except Exception:
            if watch.expired:
                raise OutOfTime(seconds) from None
            raise
    if watch.expired:
        raise OutOfTime(seconds)
    return result
