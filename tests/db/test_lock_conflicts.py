"""A wait for a row lock ends inside the invocation: every session waits at most
DB_LOCK_WAIT_TIMEOUT_S, a unit of work runs again only while another full wait still fits
before the platform's time limit, and a conflict no try resolved is a 503, not a 500 and
not a request the platform cuts off."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select, text, update
from sqlalchemy.exc import OperationalError

from app.clock import invocation_ending
from app.db.conflicts import lock_conflict_code, retry_conflicts
from app.db.tables import tasks, users
from app.db.transaction import transaction
from app.ids import new_id
from app.redis_client import get_redis
from app.storage.objects import upload_key
from tests.fakes.cos import FakeCos
from tests.support.function_url import Reply, context, event, reply_of
from tests.support.functions import handler
from tests.support.lock_waits import RowLock, held_past_one_wait
from tests.support.logs import capture_logs
from tests.support.pipelines import Customer, new_pipeline
from tests.support.settings import app_engine_under

QUICK = [{"id": "a", "type": "sim", "duration_ms": 1}]


@pytest.fixture
def one_second_waits() -> Iterator[None]:
    with app_engine_under(DB_LOCK_WAIT_TIMEOUT_S="1"):
        yield


def _session_waits() -> tuple[int, int]:
    """(row locks, metadata locks): how long this session waits for each."""
    query = text("SELECT @@SESSION.innodb_lock_wait_timeout, @@SESSION.lock_wait_timeout")
    with transaction() as tx:
        rows, tables = tx.execute(query).one()
    return int(rows), int(tables)


def test_every_session_waits_for_a_lock_as_long_as_the_setting_says() -> None:
    assert _session_waits() == (3, 3)  # the default, not the server's 50 s and a day
    with app_engine_under(DB_LOCK_WAIT_TIMEOUT_S="7"):
        assert _session_waits() == (7, 7)


class _Touch:
    """A unit of work that updates the user's row, counting its tries; `first_s` of other
    work (a provider's call) before it, in each try."""

    def __init__(self, user_id: str, first_s: float = 0.0) -> None:
        self.user_id = user_id
        self.first_s = first_s
        self.tries = 0

    def __call__(self) -> None:
        self.tries += 1
        time.sleep(self.first_s)
        with transaction() as tx:
            tx.execute(update(users).where(users.c.id == self.user_id).values(nickname=None))


def _tries_while_held(
    user_id: str, ends_in_s: float | None, attempts: int, first_s: float = 0.0
) -> _Touch:
    touch = _Touch(user_id, first_s)
    lock = RowLock()
    lock.take(select(users.c.id).where(users.c.id == user_id))
    try:
        ends_at = None if ends_in_s is None else time.monotonic() + ends_in_s
        with invocation_ending(ends_at), pytest.raises(OperationalError) as failed:
            retry_conflicts(touch, attempts=attempts)
    finally:
        lock.release()
    assert lock_conflict_code(failed.value) == 1205
    return touch


@pytest.mark.slow  # five waits of 1 s
def test_a_lock_wait_is_tried_again_while_another_wait_fits(one_second_waits: None) -> None:
    user = Customer(quota=1)
    # Outside an invocation, or with time for another wait (1 s) and the answer (1 s): all.
    assert _tries_while_held(user.id, None, attempts=2).tries == 2
    assert _tries_while_held(user.id, 10.0, attempts=2).tries == 2
    # 2.5 s: after the first wait about 1.5 s are left, short of another wait and the answer.
    assert _tries_while_held(user.id, 2.5, attempts=5).tries == 1


@pytest.mark.slow  # tries of 3 s
def test_a_try_that_took_longer_than_a_lock_wait_counts_as_long(one_second_waits: None) -> None:
    """A try of 3 s (2 s of other work, then the 1 s wait) leaves 2.5 s of 5.5: enough for
    another wait and the answer (2 s), not for another try like it (4 s); 9 s leave 6."""
    user = Customer(quota=1)
    assert _tries_while_held(user.id, 5.5, attempts=5, first_s=2.0).tries == 1
    assert _tries_while_held(user.id, 9.0, attempts=2, first_s=2.0).tries == 2


def test_a_bug_raised_while_a_conflict_was_handled_is_not_a_conflict(
    one_second_waits: None,
) -> None:
    user = Customer(quota=1)
    tries = 0

    def buggy() -> None:
        nonlocal tries
        tries += 1
        try:
            _Touch(user.id)()
        except OperationalError:
            raise KeyError("a bug in the handling") from None

    lock = RowLock()
    lock.take(select(users.c.id).where(users.c.id == user.id))
    try:
        with pytest.raises(KeyError) as raised:
            retry_conflicts(buggy)
    finally:
        lock.release()
    assert tries == 1
    assert raised.value.__context__ is not None  # the conflict is still in its chain
    assert lock_conflict_code(raised.value.__context__) == 1205
    assert lock_conflict_code(raised.value) is None  # so the answer is 500, with a trace


def _cancel(customer: Customer, task_id: str, time_limit_ms: int) -> Any:
    sent = event("POST", f"/tasks/{task_id}/cancel", token=customer.token)
    invocation = {**context("tasks-id"), "time_limit_in_ms": time_limit_ms}
    return reply_of(handler("tasks-id")(sent, invocation))


def test_a_cancel_that_cannot_get_its_task_in_time_is_503_and_changes_nothing(
    one_second_waits: None,
) -> None:
    customer = Customer(quota=5)
    task_id = customer.create(new_pipeline(QUICK)).json()["id"]
    lock = RowLock()
    lock.take(select(tasks.c.id).where(tasks.c.id == task_id))
    try:
        with capture_logs() as logs:
            reply = _cancel(customer, task_id, time_limit_ms=2500)  # one wait fits, not two
    finally:
        lock.release()

    assert reply.status == 503, reply.body
    assert reply.json()["code"] == "SERVICE_UNAVAILABLE"
    assert reply.header("Retry-After") == "1"
    conflicts = logs.where(message="db lock conflict")
    assert [(line["level"], line["code"]) for line in conflicts] == [("warning", 1205)]
    assert not logs.where(message="unhandled error") and "Traceback" not in logs.text
    assert customer.get(task_id).json()["status"] == "queued"
    assert customer.quota() == (4, 1)

    again = _cancel(customer, task_id, time_limit_ms=2500)  # the lock gone, as sent again
    assert again.status == 200 and again.json()["status"] == "cancelled"
    assert customer.quota() == (5, 0)


@pytest.mark.slow  # five tries of a 1 s wait
def test_a_keyed_create_whose_user_row_stays_locked_is_503_and_creates_nothing(
    one_second_waits: None,
) -> None:
    customer = Customer(quota=5)
    pipeline = new_pipeline(QUICK)
    lock = RowLock()
    lock.take(select(users.c.id).where(users.c.id == customer.id))
    try:
        started = time.monotonic()
        refused = customer.create(pipeline, key="task-1")
        waited = time.monotonic() - started
    finally:
        lock.release()

    assert (refused.status, refused.json()["code"]) == (503, "SERVICE_UNAVAILABLE")
    assert waited >= 2.0  # a 10 s invocation: tried again after the first full wait
    assert customer.list().json()["items"] == [] and customer.quota() == (5, 0)
    created = customer.create(pipeline, key="task-1")  # the key was not taken
    assert created.status == 201 and customer.quota() == (4, 1)


def test_a_keyed_create_whose_write_meets_a_lock_writes_again_and_counts_once(
    one_second_waits: None, cos_bucket: FakeCos
) -> None:
    """The user's row held past one wait: the first try of the create's transaction fails,
    the second makes the task. The count, taken before, is taken once, and each upload the
    input names is asked of the bucket once."""
    customer = Customer(quota=5)
    pipeline = new_pipeline(QUICK)
    upload = upload_key(customer.id, new_id())
    cos_bucket.plant(upload, b"\x89PNG\r\n\x1a\n")
    heads = cos_bucket.count("HeadObject")
    replies: list[Reply] = []
    sending = threading.Thread(
        target=lambda: replies.append(customer.create(pipeline, {"page": upload}, key="task-1"))
    )
    held_past_one_wait(select(users.c.id).where(users.c.id == customer.id), sending.start)
    sending.join(20)

    [created] = replies
    assert created.status == 201, created.body
    assert cos_bucket.count("HeadObject") == heads + 1
    assert get_redis().get(f"tasks:rate:{customer.id}") == "1"
    assert customer.quota() == (4, 1)
    assert [task["id"] for task in customer.list().json()["items"]] == [created.json()["id"]]
