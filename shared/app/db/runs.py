"""A maintenance job's run rows (`maintenance_runs`): one live run per job, and what each
run did so far.

`start(job)` writes the run's row (`running`) and refuses, with `RunBusy`, while another run
of the job is live: the row's `live_job` is unique, so of two runs starting at once (a timer
and an admin's POST /admin/jobs/{name}) the second's row does not go in. A row still
`running` after STALE_RUN_S belongs to a run that died (its function was killed at its
timeout); the next start closes it as failed. `finish` ends the row `ok` or `failed`, which
frees the job for its next run.

Owns: the run rows and the one-at-a-time rule. Never decides what a job does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from app.clock import utcnow
from app.db.tables import maintenance_runs
from app.db.transaction import transaction
from app.errors import RunBusy
from app.ids import new_id

# Longer than the longest function a job runs in (cos-cleanup and admin-jobs-run, 600 s): a
# row running for this long belongs to a dead run.
STALE_RUN_S = 900
DEAD_RUN_ERROR = "stopped before its end"
# Ended runs are kept this long to look back on, then removed by the job's next start: a job
# every 10 minutes would otherwise add 52,000 rows a year.
KEEP_ENDED_DAYS = 30


@dataclass(frozen=True)
class Started:
    id: str
    carried: dict[str, Any]  # the `carry` columns as the job's last run left them


def start(job: str, carry: Sequence[str] = ()) -> Started:
    """This run's row, `running`; a dead run's row closed first, and the job's runs ended
    more than KEEP_ENDED_DAYS ago removed. The `carry` columns are
    copied from the job's last run (where it stopped) into this run's row, which keeps them
    unless the run says otherwise when it finishes: a run that fails or dies leaves them to
    the next as it found them. RunBusy while another run of `job` is live."""
    now = utcnow()
    carried: dict[str, Any] = {}
    with transaction() as tx:
        tx.execute(
            update(maintenance_runs)
            .where(
                maintenance_runs.c.job == job,
                maintenance_runs.c.status == "running",
                maintenance_runs.c.started_at < now - timedelta(seconds=STALE_RUN_S),
            )
            .values(status="failed", finished_at=now, error=DEAD_RUN_ERROR, live_job=None)
        )
        tx.execute(
            delete(maintenance_runs).where(
                maintenance_runs.c.job == job,
                maintenance_runs.c.status != "running",
                maintenance_runs.c.started_at < now - timedelta(days=KEEP_ENDED_DAYS),
            )
        )
        live = tx.execute(
            select(maintenance_runs.c.id)
            .where(maintenance_runs.c.job == job, maintenance_runs.c.status == "running")
            .limit(1)
        ).first()
        if live is not None:
            raise RunBusy(f"{job} run {live[0]} is still running")
        if carry:
            # No run of the job is live now, so the newest row is its last ended run.
            last = (
                tx.execute(
                    select(*(maintenance_runs.c[name] for name in carry))
                    .where(maintenance_runs.c.job == job)
                    .order_by(maintenance_runs.c.started_at.desc())
                    .limit(1)
                )
                .mappings()
                .first()
            )
            carried = {} if last is None else dict(last)
    run_id = new_id()
    try:
        with transaction() as tx:
            tx.execute(
                insert(maintenance_runs).values(
                    id=run_id, job=job, status="running", started_at=now, live_job=job, **carried
                )
            )
    except IntegrityError:
        raise RunBusy(f"another {job} run has just started") from None
    return Started(run_id, carried)


def update_counts(run_id: str, **values: Any) -> None:
    """What the live run did so far, for a run that dies to leave behind."""
    with transaction() as tx:
        tx.execute(update(maintenance_runs).where(maintenance_runs.c.id == run_id).values(**values))


def finish(run_id: str, status: str, error: str | None = None, **values: Any) -> None:
    """The run ended (`ok` or `failed`, with its error's text): the job is free again."""
    with transaction() as tx:
        tx.execute(
            update(maintenance_runs)
            .where(maintenance_runs.c.id == run_id)
            .values(
                status=status,
                live_job=None,
                finished_at=utcnow(),
                error=None if error is None else error[:500],
                **values,
            )
        )
