"""A failure between a step's claim and its call gives the claim and its host slot back: the
redelivered message runs the step at once, where it found the row held until its lease ran
out (minutes). A give-back is fenced by the claim's lease: it never undoes a newer claim."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pymysql
import pytest
from sqlalchemy import delete, update

from app.clock import utcnow
from app.db.engine import get_engine
from app.db.tables import task_steps, tasks
from app.db.transaction import transaction
from app.errors import AppError, ErrorCode
from app.pipeline.definition import SimCall
from app.runner import rows, slots
from app.runner.rows import Claim
from app.storage.objects import StorageError
from tests.fakes.upstream import Answer, FakeUpstream
from tests.storage.test_uploads import uploaded
from tests.support.functions import handler
from tests.support.pipelines import Customer, new_pipeline
from tests.support.settings import settings_env

CONTEXT = {"function_name": "pipeline-worker", "request_id": "t"}


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream() as fake:
        fake.script("/see", lambda _call: Answer(200, {"seen": True}))
        yield fake


def step_row(task_id: str) -> Any:
    with transaction() as tx:
        return rows.step_row(tx, task_id, 0)


def test_a_failure_before_the_call_gives_the_row_and_its_slot_back(
    upstream: FakeUpstream,
) -> None:
    user = Customer(quota=1)
    image = uploaded(user)
    pipeline = new_pipeline([{"id": "see", "type": "http", "url": upstream.url("/see")}])
    task_id = user.create(pipeline, {"image": image}).json()["id"]  # no worker: it waits
    message = {"kind": "step", "task_id": task_id, "step": 0}
    worker = handler("pipeline-worker")

    # The bucket cannot be built (no credentials): presigning the input fails after the claim.
    with settings_env(TENCENTCLOUD_SECRET_ID=""), pytest.raises(StorageError):
        worker(message, CONTEXT)

    row = step_row(task_id)
    assert (row["status"], row["attempts"], row["lease_until"]) == ("pending", 0, None)
    assert slots.in_use(f"127.0.0.1:{upstream.port}") == 0
    assert upstream.calls == []

    worker(message, CONTEXT)  # the platform's redelivery: run at once
    assert user.get(task_id).json()["status"] == "succeeded"
    assert len(upstream.calls) == 1
    assert slots.in_use(f"127.0.0.1:{upstream.port}") == 0
    assert user.quota() == (0, 0)


def test_a_claim_whose_commit_fails_gives_its_slot_back(
    upstream: FakeUpstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    user = Customer(quota=1)
    pipeline = new_pipeline([{"id": "see", "type": "http", "url": upstream.url("/see")}])
    task_id = user.create(pipeline).json()["id"]  # no worker: it waits
    message = {"kind": "step", "task_id": task_id, "step": 0}
    worker = handler("pipeline-worker")

    # The server ends the claiming transaction's connection as it commits (a failover, a
    # network cut): the claim, its host slot taken, is never committed.
    commit = pymysql.connections.Connection.commit
    lost: list[int] = []

    def commit_lost(connection: pymysql.connections.Connection) -> None:
        if not lost:
            # The claim's commit: its slot is taken (a read-only transaction has none).
            assert slots.in_use(f"127.0.0.1:{upstream.port}") == 1
            lost.append(connection.thread_id())
            with get_engine().connect() as killer:
                killer.exec_driver_sql(f"KILL CONNECTION {lost[0]}")
        commit(connection)

    monkeypatch.setattr(pymysql.connections.Connection, "commit", commit_lost)
    with pytest.raises(AppError) as failed:
        worker(message, CONTEXT)
    monkeypatch.undo()
    assert failed.value.code is ErrorCode.SERVICE_UNAVAILABLE
    assert lost

    row = step_row(task_id)
    assert (row["status"], row["attempts"], row["lease_until"]) == ("pending", 0, None)
    assert slots.in_use(f"127.0.0.1:{upstream.port}") == 0  # not held for the lease
    worker(message, CONTEXT)  # the platform's redelivery
    assert user.get(task_id).json()["status"] == "succeeded"
    assert slots.in_use(f"127.0.0.1:{upstream.port}") == 0


@pytest.fixture
def half_run() -> Iterator[list[str]]:
    """Tasks a test leaves half-run, with no worker: removed after it, or every later
    sweep in the session would find them stalled and count them with its own."""
    task_ids: list[str] = []
    yield task_ids
    with transaction() as tx:
        tx.execute(delete(task_steps).where(task_steps.c.task_id.in_(task_ids)))
        tx.execute(delete(tasks).where(tasks.c.id.in_(task_ids)))


def test_a_give_back_never_undoes_a_newer_claim(half_run: list[str]) -> None:
    user = Customer(quota=1)
    pipeline = new_pipeline([{"id": "s", "type": "sim", "duration_ms": 1}])
    task_id = user.create(pipeline).json()["id"]  # no worker: its row stays pending
    half_run.append(task_id)
    step = SimCall(type="sim", duration_ms=1)
    with transaction() as tx:
        first = rows.claim_pending(tx, task_id, 0, -1, step)
    assert isinstance(first, Claim)
    # Its holder stalls past its lease, and another invocation takes the row over.
    with transaction() as tx:
        tx.execute(
            update(task_steps)
            .where(task_steps.c.task_id == task_id)
            .values(lease_until=utcnow() - timedelta(seconds=1))
        )
    with transaction() as tx:
        row = rows.step_row(tx, task_id, 0, lock=True)
        assert row is not None
        second = rows.claim(tx, row, step)
    assert isinstance(second, Claim)

    stale = rows.Attempts(task_id, 0, -1, first.lease, first.lease_s)
    with transaction() as tx:
        assert rows.give_back(tx, stale, first) is False
    row = step_row(task_id)
    assert (row["status"], row["attempts"], row["lease_until"]) == ("running", 2, second.lease)

    # Its own holder gives it back, its call not made: running, that call not counted.
    held = rows.Attempts(task_id, 0, -1, second.lease, second.lease_s)
    with transaction() as tx:
        assert rows.give_back(tx, held, second) is True
    row = step_row(task_id)
    assert (row["status"], row["attempts"], row["lease_until"]) == ("running", 1, None)
