"""Recovery of a stalled task: its work published again.

Owns: `resume`, which the saga sweeper calls for each task that made no progress since a
cutoff. Never writes a row: every message it sends is harmless to receive twice (claims are
conditional, and a message for work that ended re-does only what follows it), so resuming
a task that was not stalled after all changes nothing.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select

from app.clock import utcnow
from app.db.tables import task_steps
from app.pipeline.messages import Work
from app.runner.outbox import committing
from app.runner.rows import leased


def resume(task_id: str, stalled_before: datetime) -> int:
    """Publish again what a stalled task is waiting for; the number of messages sent.

    The step message of the first unfinished step (whose handler runs it, takes it over,
    fills its fork's window, or carries on after it) unless a claim's lease on it has not
    ended, and a branch message for each dispatched branch that made no progress since
    `stalled_before` and whose lease has ended. A publish that fails
    is raised (see `app.runner.outbox`): the sweep stops there, and its next run tries
    again."""
    c = task_steps.c
    with committing() as out:
        rows = (
            out.tx.execute(
                select(c.position, c.branch, c.status, c.dispatched_at, c.lease_until, c.updated_at)
                .where(c.task_id == task_id)
                .order_by(c.position, c.branch)
            )
            .mappings()
            .all()
        )
        own = [r for r in rows if r["branch"] < 0]
        if not own:
            return 0
        current = next((r for r in own if r["status"] != "succeeded"), own[-1])
        position = current["position"]
        now = utcnow()
        sent = 0
        # A step whose worker still holds its lease is in its call (an upstream's answer may
        # take longer than the stall): its message would find the row claimed and do nothing.
        if not (current["status"] == "running" and leased(current["lease_until"], now)):
            out.publish(Work(task_id, position))
            sent += 1
        for row in rows:
            stale_branch = (
                row["position"] == position
                and row["branch"] >= 0
                and row["dispatched_at"] is not None
                and row["status"] in ("pending", "running")
                and row["updated_at"] < stalled_before
                and not leased(row["lease_until"], now)
            )
            if stale_branch:
                out.publish(Work(task_id, position, row["branch"]))
                sent += 1
    return sent
