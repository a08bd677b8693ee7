"""Where each stage of the saga sweeper that takes row after row stopped, so that the next
run goes on from there.

Read oldest first with a batch limit, a stage would take the same oldest rows every run
while they stay in its set: stalled tasks stay stalled while the worker is down (a
resumption writes no row, `app.runner.recovery`), and an overdue task or a left reservation
whose expiry or settle keeps failing (a lock that keeps being met, a row whose settle
raises) stays overdue or left; more of them than a run takes and the newer rows wait
forever. So a stage takes its rows in the order of its `(time, task id)` starting after the
last one the previous run took (`in_turn`), and goes round to the oldest when it reaches
the end: with N in the set and k taken a run, each is taken once every ceil(N / k) runs.
When every row taken leaves the set, the same rows are taken as oldest first, in another
order.

A stage's place is one Redis key (`Rotation`: the last row taken, its time and task id),
kept a day. Without it (Redis down, the key lost or unreadable) a run starts from the
oldest, as before; a place that cannot be kept is logged and the next run starts where
the last kept one says. Either way the run itself goes on.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import ColumnElement, Row, Select

from app.db.transaction import Transaction
from app.observability import logging as applog
from app.redis_client import get_redis

log = applog.get_logger("app.runner.rotation")

KEPT_S = 86400


class Place(NamedTuple):
    """A row's place in a stage's order: the time the stage orders by (a stalled task's
    `updated_at`, an overdue task's or a reservation's `created_at`) and its task id."""

    at: datetime
    task_id: str


class Rotation(NamedTuple):
    """A stage's place: its name (in the log lines) and its Redis key."""

    stage: str
    key: str


STALLED = Rotation("republish", "sweeper:stalled:after")
OVERDUE = Rotation("expire", "sweeper:overdue:after")
LEFT_RESERVED = Rotation("settle", "sweeper:left-reserved:after")


def in_turn(
    tx: Transaction,
    query: Select[Any],
    at: ColumnElement[datetime],
    task_id: ColumnElement[str],
    place: Place | None,
    limit: int,
) -> list[Row[Any]]:
    """Up to `limit` rows of `query`, which is ordered by `at` then `task_id`: those after
    `place`, then from the oldest round to it; from the oldest without a place."""
    if place is None:
        return list(tx.execute(query.limit(limit)))
    after = (at > place.at) | ((at == place.at) & (task_id > place.task_id))
    rows = list(tx.execute(query.where(after).limit(limit)))
    if len(rows) < limit:  # the end reached: round to the oldest
        rows += tx.execute(query.where(~after).limit(limit - len(rows)))
    return rows


def last_place(rotation: Rotation) -> Place | None:
    """The place of the last row the stage's previous run took, if known."""
    try:
        raw = get_redis().get(rotation.key)
    except Exception as error:  # noqa: BLE001 - without it the run starts from the oldest
        _unkept(rotation, "read", error)
        return None
    if not raw:
        return None
    try:
        found = json.loads(raw)
        when = datetime.fromisoformat(found["at"])
    except (ValueError, KeyError, TypeError):
        return None
    return Place(when, str(found["id"])) if when.tzinfo is not None else None


def keep_place(rotation: Rotation, place: Place) -> None:
    """Remember `place` for the stage's next run; a failure is logged, never raised."""
    value = json.dumps({"at": place.at.isoformat(), "id": place.task_id})
    try:
        get_redis().set(rotation.key, value, ex=KEPT_S)
    except Exception as error:  # noqa: BLE001 - the next run starts from the last place kept
        _unkept(rotation, "write", error)


def _unkept(rotation: Rotation, what: str, error: Exception) -> None:
    # The class only, as every sweep line: an error's text may carry anything.
    applog.log_fields(
        log,
        logging.WARNING,
        "sweep place unavailable",
        stage=rotation.stage,
        operation=what,
        error=type(error).__name__,
    )
