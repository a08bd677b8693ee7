"""Time as the system keeps it: timezone-aware UTC, shown as ISO 8601 ending in Z; when the
current invocation ends, which the adapter that entered it knows from the platform and code
far below it asks before trying something again (`time_left`); and how long a job's run may
take work, from when the invocation it runs in ends (`run_budget_s`), whether its timer or
an admin's request (`POST /admin/jobs/{name}`) entered it."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime, timezone
from typing import Any

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
