"""`POST /tasks` per user per hour (TASKS_PER_USER_PER_HOUR): past it `429 RATE_LIMITED`
with Retry-After, nothing created, reserved or published; a replayed Idempotency-Key is
answered past it and counts nothing; a cancel gives the quota back, never the count."""

from __future__ import annotations

import threading
import time
from typing import Any

from sqlalchemy import func, select

from app.db.tables import task_steps, tasks, users
from app.db.transaction import transaction
from app.queue.local import broker
from tests.support.lock_waits import RowLock, wait_for_a_lock_wait
from tests.support.pipelines import Customer, new_pipeline
from tests.support.settings import app_engine_under, redis_down, settings_env

QUICK = [{"id": "a", "type": "sim", "duration_ms": 1}]
FORK = {"id": "f", "type": "fork", "for_each": "input.prompts", "step": {"type": "sim"}}


def rows_of(user_id: str) -> tuple[int, int]:
    """The user's task rows and their step rows."""
    with transaction() as tx:
        made = tx.execute(select(func.count()).where(tasks.c.user_id == user_id)).scalar()
        steps = tx.execute(
            select(func.count())
            .select_from(task_steps.join(tasks, task_steps.c.task_id == tasks.c.id))
            .where(tasks.c.user_id == user_id)
        ).scalar()
    return int(made or 0), int(steps or 0)


def parked() -> int:
    """Start messages published with no worker subscribed (none is, in these tests)."""
    return broker().stats()["parked"]


def test_a_user_makes_at_most_tasks_per_user_per_hour_tasks() -> None:
    user = Customer(quota=5)
    pipeline = new_pipeline([*QUICK, FORK], cost=1)
    with settings_env(TASKS_PER_USER_PER_HOUR="2"):
        # Refused before the count: no such pipeline, an input that does not fit.
        assert user.create("no-such-pipeline", {"prompts": ["x"]}).status == 404
        assert user.create(pipeline, {"prompts": "x"}).status == 422
        first = user.create(pipeline, {"prompts": ["x", "y"]}, key="task-1")
        assert first.status == 201, first.body
        assert user.create(pipeline, {"prompts": ["x"]}).status == 201
        made, published = rows_of(user.id), parked()
        refused = user.create(pipeline, {"prompts": ["x"] * 50})
        assert refused.status == 429 and refused.json()["code"] == "RATE_LIMITED", refused.body
        assert 3500 <= int(refused.headers["Retry-After"]) <= 3600
        # Nothing created, nothing reserved, no start message.
        assert rows_of(user.id) == made
        assert user.quota() == (3, 2)
        assert parked() == published
        # A replay makes nothing, so it is answered past the limit, and counts nothing.
        again = user.create(pipeline, {"prompts": ["x", "y"]}, key="task-1")
        assert again.status == 201 and again.json() == first.json()
        # A cancel gives the quota back, not the count.
        assert user.cancel(first.json()["id"]).status == 200
        assert user.quota() == (4, 1)
        assert user.create(pipeline, {"prompts": ["x"]}).status == 429
        assert rows_of(user.id) == made and parked() == published
        # The limit is the user's own.
        assert Customer(quota=1).create(pipeline, {"prompts": ["x"]}).status == 201


def test_a_task_is_made_uncounted_while_redis_cannot_answer() -> None:
    """Tasks run without Redis (README, "When Redis is down"), so the count that Redis keeps
    does not stop one from being made; no user can bring the outage about."""
    user = Customer(quota=5)
    pipeline = new_pipeline(QUICK)
    with settings_env(TASKS_PER_USER_PER_HOUR="1"):
        assert user.create(pipeline).status == 201
        with redis_down():
            made = user.create(pipeline)
        assert made.status == 201, made.body
        assert user.create(pipeline).status == 429
    assert rows_of(user.id)[0] == 2 and user.quota() == (3, 2)


def first_and_duplicate(user: Customer, pipeline: str, held_s: float) -> dict[str, Any]:
    """The answers to a keyed create (`first`) that claims its key and then waits for the
    user's row, which the test holds, and to its duplicate (`duplicate`), sent once the first
    waits and past TASKS_PER_USER_PER_HOUR (1), which waits on the first's key; the row is
    let go `held_s` after both wait."""
    answers: dict[str, Any] = {}

    def send(name: str) -> threading.Thread:
        sending = threading.Thread(
            target=lambda: answers.update({name: user.create(pipeline, key="task-1")})
        )
        sending.start()
        return sending

    lock = RowLock()
    with settings_env(TASKS_PER_USER_PER_HOUR="1"):
        lock.take(select(users.c.id).where(users.c.id == user.id))
        try:
            first = send("first")
            wait_for_a_lock_wait()  # the first has claimed its key; its reservation waits
            duplicate = send("duplicate")
            wait_for_a_lock_wait(waiting=2)  # the duplicate waits on the first's key
            time.sleep(held_s)
        finally:
            lock.release()
        first.join(20)
        duplicate.join(20)
    return answers


def test_a_duplicate_sent_while_its_first_is_in_flight_gets_its_answer_past_the_limit() -> None:
    """The first request holds its key uncommitted (here it waits for the user's row, which
    the test holds); its duplicate, past the limit, waits for it rather than being refused,
    and once the first commits gets the first's answer, as it would within the limit."""
    user = Customer(quota=5)
    answers = first_and_duplicate(user, new_pipeline(QUICK), held_s=0)
    assert answers["first"].status == 201, answers["first"].body
    assert answers["duplicate"].status == 201, answers["duplicate"].body
    assert answers["duplicate"].json() == answers["first"].json()
    assert rows_of(user.id)[0] == 1 and user.quota() == (4, 1)


def test_a_duplicate_past_the_limit_waits_through_its_first_writing_again() -> None:
    """The first's reservation waits for the user's row past one lock wait (held 2.5 s, the
    wait 1 s), so its write goes round again; the key it claimed stays claimed across its
    tries, so its duplicate, past the limit, never finds the key free between them (and
    answers `429`, the first committing after), but waits on and gets the first's answer."""
    user = Customer(quota=5)
    with app_engine_under(DB_LOCK_WAIT_TIMEOUT_S="1"):
        answers = first_and_duplicate(user, new_pipeline(QUICK), held_s=2.5)
    assert answers["first"].status == 201, answers["first"].body
    assert answers["duplicate"].status == 201, answers["duplicate"].body
    assert answers["duplicate"].json() == answers["first"].json()
    assert rows_of(user.id)[0] == 1 and user.quota() == (4, 1)
