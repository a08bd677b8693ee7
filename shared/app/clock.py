"""Time as the system keeps it: timezone-aware UTC, shown as ISO 8601 ending in Z; and how
long a timer job's run may take work, from when its invocation ends."""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Protocol


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def iso(value: datetime | None) -> str | None:
    """ISO 8601 UTC ending in Z, as the API speaks."""
    if value is None:
        return None
    return value.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


class Invocation(Protocol):
    """What a timer job's run is told of its invocation (the timer adapter's event)."""

    @property
    def ends_at(self) -> float | None:
        """When the platform ends the invocation, time.monotonic(); None when unknown."""
        ...


def run_budget_s(invocation: Invocation | None, budget_s: float, after_s: float) -> float:
    """How long a timer job's run may take work: `budget_s`, or less when its invocation
    ends sooner, so that what it still spends once it stops taking work (`after_s`: the last
    turn taken, the report) ends before the platform ends the invocation. Without an
    invocation's end (an admin's run, a caller other than SCF) it is `budget_s`."""
    if invocation is None or invocation.ends_at is None:
        return budget_s
    return min(budget_s, invocation.ends_at - time.monotonic() - after_s)
