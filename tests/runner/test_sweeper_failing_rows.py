"""Rows that keep failing hold no newer row back: the saga sweeper's expiry and settling of
left reservations go on, each run, from the row where the last run stopped, as its
republishing does, so that more failing rows than a run takes (a reservation whose settle
raises every time) no longer fill every run while a newer row waits forever. Without Redis,
where the place is kept, a run starts from the oldest, as before.

The failure is the data's own: a reservation whose user row is not there, so that its
settle (the sweeper's, or the one an expiry makes) raises NOT_FOUND every time. In a
database of the test's own, so that the rows each stage finds are exactly the test's."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import insert, select, update

from app.clock import utcnow
from app.db.tables import quota_transactions, tasks
from app.db.transaction import transaction
from app.ids import new_id
from app.quota import service as quota
from app.runner import sweeper
from tests.support.database import a_database_of_its_own
from tests.support.logs import capture_logs
from tests.support.quota import new_user
from tests.support.settings import redis_down

BATCH = 2  # fewer than FAILING: a run from the oldest takes failing rows only
FAILING = 3
SWEEPS = 3  # 6 turns, room for the 3 failing rows and the newer one


@pytest.fixture
def own_database(clean_redis: Any) -> Iterator[None]:
    with a_database_of_its_own("turns"):
        yield


def _long_ago(position: int) -> datetime:
    """Past any TASK_MAX_RUNTIME_S, the lower `position` the older."""
    return utcnow() - timedelta(days=30) + timedelta(seconds=position)


def _reservation_of_no_user(task_id: str, created_at: datetime) -> None:
    """A reservation whose user row is not there: settling it raises NOT_FOUND every time."""
    with transaction() as tx:
        tx.execute(
            insert(quota_transactions).values(
                id=new_id(),
                task_id=task_id,
                user_id=new_id(),
                amount=1,
                phase="reserved",
                created_at=created_at,
                updated_at=created_at,
            )
        )


def _overdue_task(position: int, cost: int) -> str:
    task_id = new_id()
    with transaction() as tx:
        tx.execute(
            insert(tasks).values(
                id=task_id,
                user_id=new_id(),
                pipeline_id="p-sweeper",
                status="queued",
                cost=cost,
                input={},
                steps=[],
                created_at=_long_ago(position),
                updated_at=_long_ago(position),
            )
        )
    return task_id


def _task_status(task_id: str) -> str:
    with transaction() as tx:
        return str(tx.execute(select(tasks.c.status).where(tasks.c.id == task_id)).scalar_one())


def _phase(task_id: str) -> str:
    qt = quota_transactions.c
    with transaction() as tx:
        return str(tx.execute(select(qt.phase).where(qt.task_id == task_id)).scalar_one())


@dataclass(frozen=True)
class Stage:
    """A stage of the sweep: its name in the failure lines, its report's count, its rows
    (FAILING that always fail, oldest first, then a newer good one), and a row's state
    before the stage took it and after."""

    name: str
    count: str
    failing: Callable[[int], str]
    good: Callable[[int], str]
    state: Callable[[str], str]
    waiting: str
    done: str


def _overdue_whose_settle_fails(position: int) -> str:
    task_id = _overdue_task(position, cost=1)
    _reservation_of_no_user(task_id, _long_ago(position))
    return task_id


def _left_of_no_user(position: int) -> str:
    """A reservation left by a task that was never written, of no user."""
    task_id = new_id()
    _reservation_of_no_user(task_id, _long_ago(position))
    return task_id


def _left_reservation(position: int) -> str:
    """A reservation of a user with the quota for it, left by a task never written."""
    task_id = new_id()
    quota.reserve(new_user(quota=1), task_id, 1)
    qt = quota_transactions.c
    with transaction() as tx:
        tx.execute(
            update(quota_transactions)
            .where(qt.task_id == task_id)
            .values(created_at=_long_ago(position))
        )
    return task_id


EXPIRY = Stage(
    "expire",
    "expired",
    _overdue_whose_settle_fails,
    lambda position: _overdue_task(position, cost=0),
    _task_status,
    "queued",
    "failed",
)
SETTLING = Stage(
    "settle", "settled", _left_of_no_user, _left_reservation, _phase, "reserved", "cancelled"
)


@pytest.fixture(params=[EXPIRY, SETTLING], ids=["expiry", "settling"])
def stage(
    request: pytest.FixtureRequest, own_database: None, monkeypatch: pytest.MonkeyPatch
) -> Stage:
    """Each stage in turn, in a database of the test's own, with a batch of BATCH."""
    monkeypatch.setattr(sweeper, "BATCH", BATCH)
    return request.param  # type: ignore[no-any-return]


def _rows(stage: Stage) -> tuple[list[str], str]:
    failing = [stage.failing(position) for position in range(FAILING)]
    return failing, stage.good(FAILING)


def _sweeps(count: int) -> list[dict[str, Any]]:
    return [sweeper.sweep() for _ in range(count)]


def _tried(logs: Any, stage: Stage) -> list[str]:
    lines = logs.where(message="sweep of a task failed", stage=stage.name)
    return [line["task_id"] for line in lines]


def test_rows_that_keep_failing_hold_no_newer_row_back(stage: Stage) -> None:
    failing, good = _rows(stage)

    with capture_logs() as logs:
        reports = _sweeps(SWEEPS)

    assert stage.state(good) == stage.done, reports
    assert sum(report[stage.count] for report in reports) == 1, reports
    # Every failing row was tried again in turn, and is still there for the next run.
    assert set(_tried(logs, stage)) == set(failing)
    assert [stage.state(task_id) for task_id in failing] == [stage.waiting] * FAILING


def test_without_redis_a_run_starts_from_the_oldest_as_before(stage: Stage) -> None:
    failing, good = _rows(stage)

    with redis_down(), capture_logs() as logs:
        reports = _sweeps(2)

    assert stage.state(good) == stage.waiting, reports
    assert _tried(logs, stage) == failing[:BATCH] * 2
    lines = logs.where(message="sweep place unavailable", stage=stage.name)
    assert [(line["operation"], line["error"]) for line in lines] == [
        ("read", "ConnectionError"),
        ("write", "ConnectionError"),
    ] * 2
