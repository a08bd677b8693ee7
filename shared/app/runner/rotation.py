"""Where the saga sweeper's republishing stopped, so that the next run goes on from there.

A resumption writes no row (`app.runner.recovery`), so a stalled task keeps its place among
the stalled ones while the worker is down: read oldest first, every run would take the same
oldest tasks up to its batch or its share of the budget, and the newer ones would wait
until the older ones moved. So the run takes the stalled tasks in the order of their
`(updated_at, id)` starting after the last one the previous run took, and goes round to the
oldest when it reaches the end: with N stalled and k taken a run, each is published again
once every ceil(N / k) runs.

The place is one Redis key, `sweeper:stalled:after` (the last task taken, its `updated_at`
and id), kept a day. Without it (Redis down, the key lost or unreadable) a run starts from
the oldest, as before; a place that cannot be kept is logged and the next run starts where
the last kept one says. Either way the run itself goes on.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime
from typing import NamedTuple

from app.observability import logging as applog
from app.redis_client import get_redis

log = applog.get_logger("app.runner.rotation")

KEY = "sweeper:stalled:after"
KEPT_S = 86400


class Place(NamedTuple):
    """A stalled task's place in the sweep's order."""

    updated_at: datetime
    task_id: str


def last_place() -> Place | None:
    """The `(updated_at, id)` of the last stalled task the previous run took, if known."""
    try:
        raw = get_redis().get(KEY)
    except Exception as error:  # noqa: BLE001 - without it the run starts from the oldest
        _unkept("read", error)
        return None
    if not raw:
        return None
    try:
        found = json.loads(raw)
        when = datetime.fromisoformat(found["updated_at"])
    except (ValueError, KeyError, TypeError):
        return None
    return Place(when, str(found["id"])) if when.tzinfo is not None else None


def keep_place(place: Place) -> None:
    """Remember `place` for the next run; a failure is logged, never raised."""
    value = json.dumps({"updated_at": place.updated_at.isoformat(), "id": place.task_id})
    try:
        get_redis().set(KEY, value, ex=KEPT_S)
    except Exception as error:  # noqa: BLE001 - the next run starts from the last place kept
        _unkept("write", error)


def _unkept(what: str, error: Exception) -> None:
    # The class only, as every sweep line: an error's text may carry anything.
    applog.log_fields(
        log,
        logging.WARNING,
        "stalled sweep place unavailable",
        operation=what,
        error=type(error).__name__,
    )
