"""The quota saga on MariaDB: reserve, confirm, cancel, tombstones; one thread at a time."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from sqlalchemy import insert, select

from app.clock import utcnow
from app.db.tables import invite_codes, quota_ledger, quota_transactions
from app.db.transaction import transaction
from app.errors import AppError, ErrorCode
from app.ids import new_id
from app.quota import ReservationRefused, cancel, confirm, grant, reserve
from tests.support.quota import counters, new_user


def saga(task_id: str) -> Any:
    with transaction() as conn:
        return conn.execute(
            select(quota_transactions).where(quota_transactions.c.task_id == task_id)
        ).first()


def ledger_kinds(task_id: str) -> list[str]:
    with transaction() as conn:
        rows = conn.execute(
            select(quota_ledger.c.kind)
            .where(quota_ledger.c.task_id == task_id)
            .order_by(quota_ledger.c.created_at)
        )
        return [row.kind for row in rows]


def warnings_about(caplog: pytest.LogCaptureFixture, task_id: str) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.levelno == logging.WARNING
        and getattr(record, "fields", {}).get("task_id") == task_id
    ]


def test_reserve_moves_the_cost_from_balance_to_reserved() -> None:
    user, task = new_user(10), new_id()

    held = reserve(user, task, 3)

    assert (held.phase, held.created, held.amount) == ("reserved", True, 3)
    assert counters(user) == (7, 3)
    row = saga(task)
    assert (row.user_id, row.amount, row.phase) == (user, 3, "reserved")
    assert ledger_kinds(task) == ["reserve"]


def test_reserve_without_enough_balance_is_402_and_changes_nothing() -> None:
    user, task = new_user(2), new_id()

    with pytest.raises(AppError) as caught:
        reserve(user, task, 3)

    assert caught.value.code is ErrorCode.QUOTA_INSUFFICIENT
    assert caught.value.status == 402
    assert caught.value.details == {"required": 3, "available": 2}
    assert counters(user) == (2, 0)
    assert saga(task) is None
    assert ledger_kinds(task) == []


def test_a_repeated_reserve_returns_the_reservation_and_charges_once() -> None:
    user, task = new_user(5), new_id()
    reserve(user, task, 3)

    again = reserve(user, task, 3)

    assert (again.phase, again.created) == ("reserved", False)
    assert counters(user) == (2, 3)
    # Even when the balance left could no longer pay for it.
    assert reserve(user, task, 3).created is False
    assert ledger_kinds(task) == ["reserve"]


def test_a_reserve_with_other_terms_for_a_reserved_task_is_refused() -> None:
    user, other, task = new_user(10), new_user(10), new_id()
    reserve(user, task, 3)

    for who, amount in ((user, 4), (other, 3)):
        with pytest.raises(ReservationRefused) as caught:
            reserve(who, task, amount)
        assert caught.value.code is ErrorCode.IDEMPOTENCY_KEY_MISMATCH
        assert caught.value.phase == "reserved"

    assert counters(user) == (7, 3)
    assert counters(other) == (10, 0)


def test_reserve_for_an_unknown_user_is_404() -> None:
    with pytest.raises(AppError) as caught:
        reserve(new_id(), new_id(), 1)
    assert caught.value.code is ErrorCode.NOT_FOUND


@pytest.mark.parametrize(
    ("task_id", "amount"), [("", 1), ("x" * 33, 1), ("ok", -1)], ids=["empty", "long", "negative"]
)
def test_reserve_refuses_bad_arguments(task_id: str, amount: int) -> None:
    user = new_user(5)
    with pytest.raises(AppError) as caught:
        reserve(user, task_id, amount)
    assert caught.value.code is ErrorCode.VALIDATION_ERROR
    assert counters(user) == (5, 0)


def test_a_zero_cost_reservation_is_a_saga_like_any_other() -> None:
    user, task = new_user(), new_id()

    assert reserve(user, task, 0).created is True
    assert confirm(task).outcome == "confirmed"
    assert counters(user) == (0, 0)


def test_confirm_spends_the_reservation_once(caplog: pytest.LogCaptureFixture) -> None:
    user, task = new_user(10), new_id()
    reserve(user, task, 4)

    first = confirm(task)
    repeat = confirm(task)
    late_cancel = cancel(task)

    assert (first.phase, first.changed, first.amount, first.outcome) == (
        "confirmed",
        True,
        4,
        "confirmed",
    )
    assert (repeat.phase, repeat.changed, repeat.outcome) == ("confirmed", False, "repeat")
    assert (late_cancel.phase, late_cancel.changed, late_cancel.outcome) == (
        "confirmed",
        False,
        "conflict",
    )
    assert counters(user) == (6, 0)
    assert saga(task).phase == "confirmed"
    assert ledger_kinds(task) == ["reserve", "confirm"]
    assert warnings_about(caplog, task) == ["quota cancel ignored: reservation already confirmed"]


def test_cancel_returns_the_reservation_once(caplog: pytest.LogCaptureFixture) -> None:
    user, task = new_user(10), new_id()
    reserve(user, task, 4)

    first = cancel(task)
    repeat = cancel(task)
    late_confirm = confirm(task)

    assert (first.phase, first.changed, first.amount) == ("cancelled", True, 4)
    assert (repeat.changed, repeat.outcome) == (False, "repeat")
    assert (late_confirm.phase, late_confirm.changed, late_confirm.outcome) == (
        "cancelled",
        False,
        "conflict",
    )
    assert counters(user) == (10, 0)
    assert ledger_kinds(task) == ["reserve", "cancel"]
    assert warnings_about(caplog, task) == ["quota confirm ignored: reservation already cancelled"]


def test_a_cancelled_task_cannot_reserve_again() -> None:
    user, task = new_user(10), new_id()
    reserve(user, task, 4)
    cancel(task)

    with pytest.raises(ReservationRefused) as caught:
        reserve(user, task, 4)

    assert caught.value.phase == "cancelled"
    assert caught.value.status == 409
    assert counters(user) == (10, 0)


def test_a_reserve_after_confirm_reports_the_confirmed_reservation() -> None:
    user, task = new_user(10), new_id()
    reserve(user, task, 4)
    confirm(task)

    again = reserve(user, task, 4)

    assert (again.phase, again.created) == ("confirmed", False)
    assert counters(user) == (6, 0)


def test_cancel_before_reserve_leaves_a_tombstone_and_the_late_reserve_is_refused(
    caplog: pytest.LogCaptureFixture,
) -> None:
    user, task = new_user(10), new_id()

    stone = cancel(task)

    assert (stone.phase, stone.changed, stone.amount, stone.outcome) == (
        "cancelled",
        True,
        0,
        "tombstone",
    )
    assert warnings_about(caplog, task) == ["quota cancel found no reservation; tombstone recorded"]
    with pytest.raises(ReservationRefused) as caught:
        reserve(user, task, 4)
    assert caught.value.code is ErrorCode.TASK_NOT_CANCELLABLE
    assert counters(user) == (10, 0)
    row = saga(task)
    assert (row.phase, row.amount, row.user_id) == ("cancelled", 0, "")
    assert ledger_kinds(task) == []
    assert cancel(task).outcome == "repeat"
    assert confirm(task).outcome == "conflict"


def test_confirm_of_a_task_without_reservation_changes_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    task = new_id()

    result = confirm(task)

    assert (result.phase, result.changed, result.outcome) == (None, False, "missing")
    assert saga(task) is None
    assert warnings_about(caplog, task) == ["quota confirm found no reservation"]


def test_reserve_in_the_callers_transaction_commits_and_rolls_back_with_it() -> None:
    user, kept, dropped = new_user(10), new_id(), new_id()
    code = new_id()[:16]

    with transaction() as conn:
        reserve(user, kept, 2, tx=conn)
        conn.execute(insert(invite_codes).values(code=code, created_at=utcnow()))
    with pytest.raises(RuntimeError), transaction() as conn:
        reserve(user, dropped, 3, tx=conn)
        raise RuntimeError("the task insert failed")

    assert counters(user) == (8, 2)
    assert saga(kept).phase == "reserved"
    assert saga(dropped) is None
    assert ledger_kinds(dropped) == []


def test_the_users_cached_profile_is_dropped_after_each_committed_change() -> None:
    from app.profiles import cached

    def quota_of(user: str) -> tuple[int, int]:
        found = cached(user)
        return found.quota_balance, found.quota_reserved

    user, task, dropped = new_user(10), new_id(), new_id()
    assert quota_of(user) == (10, 0)  # now cached

    with transaction() as conn:
        reserve(user, task, 4, tx=conn)
        # Not yet committed: nothing to see, and the cache still serves the old value.
        assert quota_of(user) == (10, 0)
    assert quota_of(user) == (6, 4)

    with pytest.raises(RuntimeError), transaction() as conn:
        reserve(user, dropped, 1, tx=conn)
        raise RuntimeError("rolled back")
    assert quota_of(user) == (6, 4)

    confirm(task)
    assert quota_of(user) == (6, 0)


def test_a_cache_that_cannot_be_reached_does_not_fail_the_change() -> None:
    from tests.support.logs import capture_logs
    from tests.support.settings import redis_down

    user, task = new_user(5), new_id()
    with redis_down(), capture_logs() as logs:
        reserve(user, task, 1)

    assert counters(user) == (4, 1)
    assert logs.where(message="cache unavailable", op="invalidate")


def test_metrics_count_each_outcome() -> None:
    from app.observability.metrics import QUOTA_SAGA

    def seen(verb: str, outcome: str) -> float:
        return QUOTA_SAGA.value(verb=verb, outcome=outcome)

    before = {
        key: seen(*key)
        for key in (("reserve", "reserved"), ("reserve", "insufficient"), ("confirm", "repeat"))
    }
    user, task = new_user(1), new_id()
    reserve(user, task, 1)
    with pytest.raises(AppError):
        reserve(user, new_id(), 1)
    confirm(task)
    confirm(task)

    assert seen("reserve", "reserved") == before[("reserve", "reserved")] + 1
    assert seen("reserve", "insufficient") == before[("reserve", "insufficient")] + 1
    assert seen("confirm", "repeat") == before[("confirm", "repeat")] + 1


class _CallerFailed(Exception):
    pass


def test_a_verb_in_the_callers_transaction_counts_at_its_commit_and_never_after_a_rollback() -> (
    None
):
    from app.observability.metrics import QUOTA_GRANTS, QUOTA_SAGA

    def seen() -> tuple[float, float, float]:
        return (
            QUOTA_SAGA.value(verb="reserve", outcome="reserved"),
            QUOTA_SAGA.value(verb="cancel", outcome="cancelled"),
            QUOTA_GRANTS.value(kind="admin", outcome="applied"),
        )

    user, task = new_user(2), new_id()
    reserved = new_id()
    reserve(user, reserved, 1)
    before = seen()
    # What task creation does, and a lock conflict's retry: the caller's unit rolls back
    # after the verbs succeeded in it.
    with pytest.raises(_CallerFailed), transaction() as conn:
        reserve(user, task, 1, tx=conn)
        cancel(reserved, tx=conn)
        grant(user, 1, kind="admin", reason="rolled back", tx=conn)
        raise _CallerFailed
    assert counters(user) == (1, 1)
    assert seen() == before

    with transaction() as conn:
        reserve(user, task, 1, tx=conn)
        cancel(reserved, tx=conn)
        grant(user, 1, kind="admin", reason="committed", tx=conn)
        assert seen() == before  # not yet: the caller may still roll back
    assert seen() == (before[0] + 1, before[1] + 1, before[2] + 1)


def test_a_verb_whose_database_went_away_counts_as_unavailable_not_refused() -> None:
    from app.db.engine import get_engine
    from app.observability.metrics import QUOTA_GRANTS, QUOTA_SAGA
    from tests.db.test_prepared import thread_of

    def seen() -> tuple[float, ...]:
        return (
            QUOTA_SAGA.value(verb="reserve", outcome="unavailable"),
            QUOTA_SAGA.value(verb="reserve", outcome="refused"),
            QUOTA_GRANTS.value(kind="admin", outcome="unavailable"),
            QUOTA_GRANTS.value(kind="admin", outcome="refused"),
        )

    def lose_the_next_connection(killer: Any) -> None:
        # The pool hands out its most recently returned connection first: this one.
        with transaction() as tx:
            thread = thread_of(tx)
        killer.exec_driver_sql(f"KILL CONNECTION {thread}")

    user = new_user(2)
    before = seen()
    with get_engine().connect() as killer:  # held: it must not be the next one handed out
        lose_the_next_connection(killer)
        with pytest.raises(AppError) as reserving:
            reserve(user, new_id(), 1)
        lose_the_next_connection(killer)
        with pytest.raises(AppError) as granting:
            grant(user, 1, kind="admin", reason="lost")

    assert reserving.value.code is granting.value.code is ErrorCode.SERVICE_UNAVAILABLE
    assert seen() == (before[0] + 1, before[1], before[2] + 1, before[3])
    assert counters(user) == (2, 0)
