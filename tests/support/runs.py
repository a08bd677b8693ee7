"""Maintenance run rows for job tests: a live run planted as another instance's would be,
and the live runs a test left behind removed, so the next test's run is not refused."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, insert

from app.clock import utcnow
from app.db.tables import maintenance_runs
from app.db.transaction import transaction
from app.ids import new_id


def plant_live_run(job: str, started_at: datetime | None = None) -> str:
    """A `running` row holding `job`, as a run on another instance holds it."""
    run_id = new_id()
    with transaction() as tx:
        tx.execute(
            insert(maintenance_runs).values(
                id=run_id,
                job=job,
                status="running",
                started_at=started_at or utcnow(),
                live_job=job,
            )
        )
    return run_id


def end_live_runs(job: str) -> None:
    with transaction() as tx:
        tx.execute(
            delete(maintenance_runs).where(
                maintenance_runs.c.job == job, maintenance_runs.c.status == "running"
            )
        )
