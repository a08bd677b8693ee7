"""The saga under real threads on MariaDB, and transactions that die half way."""

from __future__ import annotations

import contextlib
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as ResultTimeout  # not the builtin before 3.11
from contextlib import contextmanager
from typing import Any, TypeVar

import pytest
from sqlalchemy import event, select

from app.db.engine import get_engine
from app.db.tables import quota_ledger, quota_transactions
from app.db.transaction import transaction
from app.errors import AppError, ErrorCode
from app.ids import new_id
from app.quota import Reservation, Settlement, cancel, confirm, grant, reserve
from tests.support.quota import counters, new_user

T = TypeVar("T")
COST = 3


def all_at_once(calls: list[Callable[[], T]], workers: int = 50) -> list[T | BaseException]:
    """Run every call on its own thread, released together; results or exceptions, in order."""
    gate = threading.Barrier(min(workers, len(calls)))

    def run(call: Callable[[], T]) -> T | BaseException:
        # Batches of `workers` start together; a batch that cannot fill starts on timeout.
        with contextlib.suppress(threading.BrokenBarrierError):
            gate.wait(timeout=30)
        try:
            return call()
        except Exception as error:
            return error

    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(run, calls))


def test_50_concurrent_reserves_against_quota_for_20_reserve_exactly_20() -> None:
    user = new_user(20 * COST)
    tasks = [new_id() for _ in range(50)]

    results = all_at_once([lambda task=task: reserve(user, task, COST) for task in tasks])

    made = [r for r in results if isinstance(r, Reservation)]
    refused = [r for r in results if isinstance(r, AppError)]
    assert len(made) == 20 and all(r.created for r in made)
    assert len(refused) == 30
    assert {r.code for r in refused} == {ErrorCode.QUOTA_INSUFFICIENT}
    assert counters(user) == (0, 20 * COST)
    with transaction() as conn:
        rows = conn.execute(
            select(quota_transactions.c.task_id).where(quota_transactions.c.user_id == user)
        ).all()
    assert {row.task_id for row in rows} == {r.task_id for r in made}


def test_200_concurrent_confirms_and_cancels_settle_each_task_exactly_once() -> None:
    user = new_user(20 * COST)
    tasks = [new_id() for _ in range(20)]
    for task in tasks:
        reserve(user, task, COST)
    verbs = [confirm, cancel]
    calls = [(lambda task=tasks[i % 20], verb=verbs[(i // 20) % 2]: verb(task)) for i in range(200)]

    results = all_at_once(calls)

    assert all(isinstance(r, Settlement) for r in results), [
        r for r in results if not isinstance(r, Settlement)
    ]
    settled = [r for r in results if isinstance(r, Settlement)]
    changed = [r for r in settled if r.changed]
    assert len(changed) == 20
    assert sorted(r.task_id for r in changed) == sorted(tasks)
    final = {r.task_id: r.phase for r in changed}
    for r in settled:
        assert r.phase == final[r.task_id]  # every call reports the one outcome of its task
    confirmed = sum(1 for phase in final.values() if phase == "confirmed")
    assert counters(user) == ((20 - confirmed) * COST, 0)
    outcomes = Counter(r.outcome for r in settled)
    assert outcomes["confirmed"] + outcomes["cancelled"] == 20
    assert outcomes["repeat"] + outcomes["conflict"] == 180


def test_reserves_confirms_and_cancels_of_one_user_interleaved() -> None:
    user = new_user(10 * COST)
    tasks = [new_id() for _ in range(30)]

    def life(i: int) -> str:
        try:
            reserve(user, tasks[i], COST)
        except AppError as error:
            return error.code.value
        return (confirm if i % 3 else cancel)(tasks[i]).outcome

    results = all_at_once([lambda i=i: life(i) for i in range(30)], workers=30)

    assert not [r for r in results if isinstance(r, BaseException)]
    spent = results.count("confirmed") * COST
    assert counters(user) == (10 * COST - spent, 0)


def test_a_cancel_racing_a_reserve_settles_the_reservation_it_waited_for() -> None:
    user, task = new_user(10), new_id()
    reserved = threading.Event()
    release = threading.Event()

    def reserve_and_hold() -> None:
        with transaction() as conn:
            reserve(user, task, 4, tx=conn)
            reserved.set()
            release.wait(timeout=10)

    holder = threading.Thread(target=reserve_and_hold)
    holder.start()
    assert reserved.wait(timeout=10)
    with ThreadPoolExecutor(max_workers=1) as pool:
        # The cancel sees no committed row, and its tombstone insert waits on the reserve's.
        pending = pool.submit(cancel, task)
        with pytest.raises(ResultTimeout):
            pending.result(timeout=0.3)
        release.set()
        result = pending.result(timeout=10)
    holder.join()

    assert (result.outcome, result.amount) == ("cancelled", 4)
    assert counters(user) == (10, 0)


def test_10_concurrent_duplicate_grants_apply_once() -> None:
    user = new_user()
    ref = f"order:{new_id()}"

    results = all_at_once(
        [
            lambda: grant(user, 100, kind="purchase", reason="plan basic", ref=ref)
            for _ in range(10)
        ],
        workers=10,
    )

    assert [type(r).__name__ for r in results] == ["Grant"] * 10
    applied = [r for r in results if r.applied]  # type: ignore[union-attr]
    assert len(applied) == 1
    assert {r.entry.id for r in results} == {applied[0].entry.id}  # type: ignore[union-attr]
    assert counters(user) == (100, 0)


def test_the_same_ref_granted_to_two_users_at_once_applies_to_one() -> None:
    first, second = new_user(), new_user()
    ref = f"order:{new_id()}"
    inserted = threading.Event()
    release = threading.Event()

    def grant_and_hold() -> None:
        with transaction() as conn:
            grant(first, 5, kind="purchase", reason="plan", ref=ref, tx=conn)
            inserted.set()
            release.wait(timeout=10)

    holder = threading.Thread(target=grant_and_hold)
    holder.start()
    assert inserted.wait(timeout=10)
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(grant, second, 5, kind="purchase", reason="plan", ref=ref)
        with pytest.raises(ResultTimeout):
            pending.result(timeout=0.3)
        release.set()
        with pytest.raises(AppError) as caught:
            pending.result(timeout=10)
    holder.join()

    assert caught.value.code is ErrorCode.IDEMPOTENCY_KEY_MISMATCH
    assert counters(first) == (5, 0)
    assert counters(second) == (0, 0)


# -- a transaction that dies half way leaves nothing behind --------------------------------


class Crash(Exception):
    pass


@contextmanager
def crash_on(statement_prefix: str) -> Iterator[list[str]]:
    """Kill the transaction when the driver is about to send the given statement, after
    every earlier statement of the transaction went to the server."""
    sent: list[str] = []

    def before(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.startswith(statement_prefix):
            raise Crash(statement_prefix)
        sent.append(statement.split(" (")[0])

    engine = get_engine()
    event.listen(engine, "before_cursor_execute", before)
    try:
        yield sent
    finally:
        event.remove(engine, "before_cursor_execute", before)


def ledger_of(user_id: str) -> list[str]:
    with transaction() as conn:
        rows = conn.execute(select(quota_ledger.c.kind).where(quota_ledger.c.user_id == user_id))
        return [row.kind for row in rows]


@pytest.mark.parametrize(
    "dies_before",
    ["UPDATE users", "INSERT INTO quota_ledger"],
    ids=["after-saga-insert", "after-user-update"],
)
def test_a_reserve_that_dies_half_way_leaves_nothing(dies_before: str) -> None:
    user, task = new_user(10), new_id()

    with crash_on(dies_before) as sent, pytest.raises(Crash):
        reserve(user, task, 4)

    assert any(s.startswith("INSERT IGNORE INTO quota_transactions") for s in sent)
    assert counters(user) == (10, 0)
    with transaction() as conn:
        assert (
            conn.execute(
                select(quota_transactions).where(quota_transactions.c.task_id == task)
            ).first()
            is None
        )
    assert ledger_of(user) == ["admin"]
    assert reserve(user, task, 4).created is True  # and the task can still be reserved


def test_a_callers_transaction_that_dies_between_reserve_and_its_own_insert() -> None:
    user, task = new_user(10), new_id()

    with crash_on("INSERT INTO invite_codes"), pytest.raises(Crash), transaction() as conn:
        reserve(user, task, 4, tx=conn)
        from app.clock import utcnow
        from app.db.tables import invite_codes

        conn.execute(invite_codes.insert().values(code=new_id()[:16], created_at=utcnow()))

    assert counters(user) == (10, 0)
    assert ledger_of(user) == ["admin"]


@pytest.mark.parametrize("verb", [confirm, cancel], ids=["confirm", "cancel"])
@pytest.mark.parametrize("dies_before", ["UPDATE users", "INSERT INTO quota_ledger"])
def test_a_settlement_that_dies_half_way_leaves_the_reservation_open(
    verb: Callable[[str], Settlement], dies_before: str
) -> None:
    user, task = new_user(10), new_id()
    reserve(user, task, 4)

    with crash_on(dies_before), pytest.raises(Crash):
        verb(task)

    assert counters(user) == (6, 4)
    assert verb(task).changed is True  # the retry settles it
