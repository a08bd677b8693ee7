"""Time as the system keeps it: timezone-aware UTC, shown as ISO 8601 ending in Z; when the
current invocation ends, which the adapter that entered it knows from the platform and code
far below it asks before trying something again (`time_left`); and how long a job's run may
take work, from when the invocation it runs in ends (`run_budget_s`), whether its timer or
an admin's request (`POST /admin/jobs/{name}`) entered it."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime, timezone
from typing import Any

# RFC 3339's date-time: T (or t, or a space) between date and time, any fraction, Z (or z)
# or +hh:mm/-hh:mm. ASCII digits only: `\d` would take other scripts' digits too.
_RFC3339 = re.compile(
    r"([0-9]{4}-[0-9]{2}-[0-9]{2})[Tt ]([0-9]{2}:[0-9]{2}:[0-9]{2})(?:\.([0-9]+))?"
    r"([Zz]|[+-][0-9]{2}:[0-9]{2})"
)

# When the platform ends the invocation this code runs in, time.monotonic(); None outside
# one, or when the platform did not say.
_ENDS_AT: ContextVar[float | None] = ContextVar("invocation_ends_at", default=None)


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def iso(value: datetime | None) -> str | None:
    """ISO 8601 UTC ending in Z, as the API speaks."""
    if value is None:
        return None
    return value.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def rfc3339(text: str) -> datetime | None:
    """An RFC 3339 date-time as an aware datetime at its own offset (a fraction past
    microseconds cut); None when it is not one. Python 3.10's fromisoformat, the runtime's,
    reads neither a Z nor a fraction of other than 3 or 6 digits, so it reads a rewriting."""
    match = _RFC3339.fullmatch(text)
    if match is None:
        return None
    day, clock, fraction, offset = match.groups()
    micro = (fraction or "")[:6].ljust(6, "0")
    offset = "+00:00" if offset in ("Z", "z") else offset
    try:
        return datetime.fromisoformat(f"{day}T{clock}.{micro}{offset}")
    except ValueError:  # a month 13, an hour 24, an offset of 25 hours
        return None


def invocation_ends_at(context: Mapping[str, Any], entered: float) -> float | None:
    """When the platform ends an invocation entered at `entered` (time.monotonic()): SCF
    gives the function's timeout as `time_limit_in_ms`, counted from the invocation's start,
    which is at most a moment before the handler is entered."""
    limit_ms = context.get("time_limit_in_ms")
    if isinstance(limit_ms, bool) or not isinstance(limit_ms, (int, float)) or limit_ms <= 0:
        return None
    return entered + limit_ms / 1000


@contextmanager
def invocation_ending(ends_at: float | None) -> Iterator[None]:
    """The block is an invocation that the platform ends at `ends_at` (None: unknown), as
    `time_left` tells the code it calls. Entered by the HTTP, timer and queue adapters around
    their handlers (the WebSocket's connections and `db-migrate` ask nothing of it)."""
    token = _ENDS_AT.set(ends_at)
    try:
        yield
    finally:
        _ENDS_AT.reset(token)


def time_left() -> float | None:
    """Seconds until the platform ends the current invocation; None outside one or when
    unknown (a caller other than SCF, a thread the invocation started)."""
    ends_at = _ENDS_AT.get()
    return None if ends_at is None else ends_at - time.monotonic()


def run_budget_s(budget_s: float, after_s: float) -> float:
    """How long a job's run may take work: `budget_s`, or less when the invocation it runs
    in ends sooner (`time_left`), so that what it still spends once it stops taking work
    (`after_s`: the last turn taken, the report) ends before the platform ends the
    invocation. Outside an invocation whose end is known (a caller other than SCF) it is
    `budget_s`."""
    left = time_left()
    if left is None:
        return budget_s
    return min(budget_s, left - after_s)
