"""A job's ended runs are kept KEEP_ENDED_DAYS to look back on, then removed by its next
start; another job's rows, and its own recent ones, stay."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import insert, select

from app.clock import utcnow
from app.db import runs
from app.db.tables import maintenance_runs
from app.db.transaction import transaction
from app.ids import new_id


def _ended(job: str, days_ago: float) -> str:
    run_id = new_id()
    started = utcnow() - timedelta(days=days_ago)
    with transaction() as tx:
        tx.execute(
            insert(maintenance_runs).values(
                id=run_id, job=job, status="ok", started_at=started, finished_at=started
            )
        )
    return run_id


def _ids() -> set[str]:
    with transaction() as tx:
        return set(tx.execute(select(maintenance_runs.c.id)).scalars())


def test_a_start_removes_the_jobs_runs_ended_past_the_keeping_time() -> None:
    job, other = f"job-{new_id()}", f"job-{new_id()}"
    old = _ended(job, runs.KEEP_ENDED_DAYS + 1)
    recent = _ended(job, runs.KEEP_ENDED_DAYS - 1)
    others = _ended(other, runs.KEEP_ENDED_DAYS + 1)

    started = runs.start(job)
    runs.finish(started.id, "ok")

    present = _ids()
    assert old not in present
    assert {recent, others, started.id} <= present
