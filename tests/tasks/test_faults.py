"""Faults: lost messages, workers that die half way, every message delivered twice. After
the sweeper, every task has ended, every reservation is settled, nothing charged twice.

Faults are injected at the queue port (a backend that loses, fails or doubles messages),
the boundary the platform owns; the runner itself runs unchanged."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select, text, update

from app.runner import slots
from app.runner.sweeper import sweep as run_sweep
from tests.fakes.upstream import Answer, FakeUpstream
from tests.support.logs import capture_logs
from tests.support.pipelines import Customer, Worker, new_fork, new_pipeline
from tests.support.queue import backend_in_place
from tests.support.settings import settings_env


class FaultyQueue:
    """Wraps the local backend: `lose(n)` drops the next n messages, `fail_when(pred)`
    raises once for the first message matching, `double=True` sends each one twice."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.to_lose = 0
        self.lost: list[dict[str, Any]] = []
        self.fail_predicates: list[Any] = []
        self.failed: list[dict[str, Any]] = []
        self.double = False
        self.sent: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def publish(self, queue: str, message: dict[str, Any], *, delay_s: float = 0) -> str:
        with self._lock:
            if self.to_lose:
                self.to_lose -= 1
                self.lost.append(message)
                return "lost"
            for predicate in self.fail_predicates:
                if predicate(message):
                    self.fail_predicates.remove(predicate)
                    self.failed.append(message)
                    raise ConnectionError("the queue went away")
            self.sent.append(message)
        msg_id = self.inner.publish(queue, message, delay_s=delay_s)
        if self.double:
            self.inner.publish(queue, message, delay_s=delay_s)
        return str(msg_id)

    def release_due(self, topics: list[str] | None = None) -> int:
        return int(self.inner.release_due(topics))


@pytest.fixture
def faulty() -> Iterator[FaultyQueue]:
    from app.queue.local import LocalBackend

    wrapper = FaultyQueue(LocalBackend())
    with backend_in_place(wrapper):
        yield wrapper


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream() as fake:
        fake.script("/render", lambda c: Answer(200, {"r": c.body["input"]}, delay_s=0.03))
        yield fake


def sweep() -> dict[str, int]:
    with settings_env(PIPELINE_STALL_S="0"):
        return run_sweep()


def pipeline_with_fork(upstream: FakeUpstream) -> str:
    return new_pipeline(
        [
            {"id": "draft", "type": "http", "url": upstream.url("/draft")},
            {
                "id": "render",
                "type": "fork",
                "for_each": "input.prompts",
                "step": {"type": "http", "url": upstream.url("/render")},
            },
            {"id": "pick", "type": "http", "url": upstream.url("/pick")},
        ],
        cost=2,
    )


def assert_each_call_once(upstream: FakeUpstream) -> None:
    keys = Counter(c.headers["idempotency-key"] for c in upstream.calls)
    assert keys and set(keys.values()) == {1}, keys


def reservations() -> dict[str, str]:
    from app.db.tables import quota_transactions
    from app.db.transaction import transaction

    with transaction() as conn:
        rows = conn.execute(select(quota_transactions.c.task_id, quota_transactions.c.phase))
        return {row[0]: row[1] for row in rows}


def test_a_start_message_lost_after_the_commit_is_sent_again_by_the_sweeper(
    worker: Worker, faulty: FaultyQueue, upstream: FakeUpstream
) -> None:
    pipeline = pipeline_with_fork(upstream)
    user = Customer(quota=2)
    faulty.to_lose = 1  # the process died between the commit and the publish

    reply = user.create(pipeline, {"prompts": ["a", "b"]})
    worker.wait_idle()

    assert reply.status == 201
    task_id = reply.json()["id"]
    assert user.get(task_id).json()["status"] == "queued"
    assert user.quota() == (0, 2)

    assert sweep()["republished"] >= 1
    task = user.wait(task_id)

    assert task["status"] == "succeeded"
    assert user.quota() == (0, 0)
    assert reservations()[task_id] == "confirmed"
    assert_each_call_once(upstream)


def test_a_publish_that_raises_during_create_still_answers_201(
    worker: Worker, faulty: FaultyQueue
) -> None:
    pipeline = new_pipeline([{"id": "a", "type": "sim", "duration_ms": 1}])
    user = Customer(quota=1)
    faulty.fail_predicates.append(lambda m: m["kind"] == "step")

    reply = user.create(pipeline)

    assert reply.status == 201
    sweep()
    assert user.wait(reply.json()["id"])["status"] == "succeeded"


def test_a_worker_that_raises_between_a_branch_and_the_join_is_healed_by_redelivery(
    worker: Worker, faulty: FaultyQueue, upstream: FakeUpstream
) -> None:
    pipeline = pipeline_with_fork(upstream)
    user = Customer(quota=2)
    # The worker that starts the fork dies sending the first window's messages (a settling
    # branch claims its successor and runs it itself, so only the start sends branch
    # messages), and the one that makes the JOIN dies sending the next step's message.
    faulty.fail_predicates.append(lambda m: m["kind"] == "branch" and m["branch"] == 3)
    faulty.fail_predicates.append(lambda m: m["kind"] == "step" and m["step"] == 2)

    task = user.wait(user.create(pipeline, {"prompts": [f"p{i}" for i in range(8)]}).json()["id"])

    assert len(faulty.failed) == 2
    assert task["status"] == "succeeded"
    assert [r["value"] for r in task["steps"][1]["output"]] == [{"r": f"p{i}"} for i in range(8)]
    assert_each_call_once(upstream)
    assert upstream.max_in_flight <= 5
    assert user.quota() == (0, 0)


def test_every_message_delivered_twice_does_each_thing_once(
    worker: Worker, faulty: FaultyQueue, upstream: FakeUpstream
) -> None:
    faulty.double = True
    pipeline = pipeline_with_fork(upstream)
    failing = new_pipeline(
        [
            {
                "id": "render",
                "type": "fork",
                "for_each": "input.prompts",
                "step": {"type": "http", "url": upstream.url("/broken"), "retries": 0},
            }
        ],
        cost=2,
    )
    upstream.script("/broken", lambda _c: Answer(400, {}))
    user = Customer(quota=4)

    ok = user.create(pipeline, {"prompts": [f"p{i}" for i in range(7)]}).json()["id"]
    bad = user.create(failing, {"prompts": ["x", "y"]}).json()["id"]
    tasks = [user.wait(ok), user.wait(bad)]
    worker.wait_idle()
    sweep()  # and the sweeper sending everything again changes nothing either
    worker.wait_idle()

    assert {m["kind"] for m in faulty.sent} == {"step", "branch"}
    assert [t["status"] for t in tasks] == ["succeeded", "failed"]
    assert_each_call_once(upstream)
    # The fork's window, however often its messages came: the other paths' calls (the
    # draft, the failing task's branches) may overlap with it.
    assert upstream.max_in_flight_to("/render") <= 5
    assert user.quota() == (2, 0)
    phases = reservations()
    assert (phases[ok], phases[bad]) == ("confirmed", "cancelled")
    assert [user.get(t["id"]).json() for t in tasks] == tasks


def test_a_worker_that_died_mid_call_is_taken_over_once_its_lease_ran_out(
    worker: Worker, upstream: FakeUpstream
) -> None:
    from app.clock import utcnow
    from app.db.tables import task_steps
    from app.db.transaction import transaction

    pipeline = pipeline_with_fork(upstream)
    user = Customer(quota=2)
    gate = threading.Event()
    upstream.script("/draft", lambda _c: Answer(200, {"d": 1}) if gate.wait(5) else Answer(500))

    task_id = user.create(pipeline, {"prompts": ["a"]}).json()["id"]
    while not upstream.calls_to("/draft"):
        threading.Event().wait(0.01)
    # The worker holding the draft step is now "dead": its lease has run out.
    with transaction() as conn:
        conn.execute(
            update(task_steps)
            .where(task_steps.c.task_id == task_id, task_steps.c.position == 0)
            .values(lease_until=utcnow())
        )
    sweep()
    gate.set()
    task = user.wait(task_id)

    assert task["status"] == "succeeded"
    # Both callers reached the upstream, but the step settled once, by its new owner.
    assert len(upstream.calls_to("/draft")) == 2
    assert user.quota() == (0, 0)


def test_an_invocation_that_died_after_claiming_the_next_branch_is_healed_by_the_sweeper(
    worker: Worker, faulty: FaultyQueue, upstream: FakeUpstream
) -> None:
    from app.clock import utcnow
    from app.db.tables import task_steps
    from app.db.transaction import transaction

    old_owner, new_owner = threading.Event(), threading.Event()
    calls_of_p6: list[int] = []

    def render(call: Any) -> Answer:
        prompt = call.body["input"]
        if prompt == "p6":
            calls_of_p6.append(1)
            # the first caller is "dead" meanwhile; the second one is held too, so that
            # the first one's late answer comes while the row is someone else's
            (old_owner if len(calls_of_p6) == 1 else new_owner).wait(5)
        return Answer(200, {"r": prompt})

    upstream.script("/render", render)
    pipeline = new_fork(upstream.url("/render"), cost=2, over="prompts")
    user = Customer(quota=2)
    prompts = [f"p{i}" for i in range(12)]
    task_id = user.create(pipeline, {"prompts": prompts}).json()["id"]
    while len(upstream.calls) < 11:  # all but p11, which waits for p6 to settle
        threading.Event().wait(0.01)
    threading.Event().wait(0.2)  # every other branch settles

    # Branch 6 was claimed by branch 1's settle, in the same commit, and has no message.
    assert not [m for m in faulty.sent if m["kind"] == "branch" and m["branch"] == 6]
    # The invocation running it is now "dead": its lease has run out.
    with transaction() as conn:
        conn.execute(
            update(task_steps)
            .where(task_steps.c.task_id == task_id, task_steps.c.branch == 6)
            .values(lease_until=utcnow())
        )
    assert sweep()["republished"] >= 1
    while len(calls_of_p6) < 2:  # taken over: called again by its new owner
        threading.Event().wait(0.01)
    old_owner.set()  # the first caller's answer comes late: it neither settles the
    threading.Event().wait(0.3)  # branch nor claims branch 11 (the window stays 5)
    assert "p11" not in [c.body["input"] for c in upstream.calls]
    assert user.get(task_id).json()["steps"][0]["branches"][6]["status"] == "running"
    new_owner.set()
    task = user.wait(task_id)
    worker.wait_idle()

    assert task["status"] == "succeeded"
    assert [r["value"] for r in task["output"]] == [{"r": p} for p in prompts]
    assert sorted(c.body["input"] for c in upstream.calls) == sorted([*prompts, "p6"])
    assert upstream.max_in_flight <= 6  # the dead caller's call, and the window
    assert user.get(task_id).json() == task
    assert slots.in_use(f"127.0.0.1:{upstream.port}") == 0
    assert user.quota() == (0, 0)


def test_the_sweeper_fails_and_refunds_tasks_past_their_max_runtime() -> None:
    pipeline = new_pipeline([{"id": "a", "type": "sim", "duration_ms": 1}], cost=3)
    user = Customer(quota=3)
    task_id = user.create(pipeline).json()["id"]  # no worker: it stays queued

    with settings_env(TASK_MAX_RUNTIME_S="1"):
        from app.clock import utcnow
        from app.db.tables import tasks
        from app.db.transaction import transaction

        with transaction() as conn:
            old = utcnow().replace(year=2020)
            conn.execute(update(tasks).where(tasks.c.id == task_id).values(created_at=old))
        report = sweep()

    assert report["expired"] >= 1
    task = user.get(task_id).json()
    assert task["status"] == "failed"
    assert task["error"]["code"] == "PIPELINE_STEP_FAILED"
    assert "longer than 1 s" in task["error"]["message"]
    assert user.quota() == (3, 0)


def test_the_sweeper_settles_reservations_left_behind_by_ended_tasks() -> None:
    from app.db.tables import tasks
    from app.db.transaction import transaction

    pipeline = new_pipeline([{"id": "a", "type": "sim", "duration_ms": 1}], cost=1)
    user = Customer(quota=2)
    won = user.create(pipeline).json()["id"]
    lost = user.create(pipeline).json()["id"]
    # As an older release could leave them: ended, reservation untouched.
    with transaction() as conn:
        conn.execute(update(tasks).where(tasks.c.id == won).values(status="succeeded"))
        conn.execute(update(tasks).where(tasks.c.id == lost).values(status="failed"))

    assert sweep()["settled"] == 2
    assert reservations()[won] == "confirmed" and reservations()[lost] == "cancelled"
    assert user.quota() == (1, 0)
    assert sweep()["settled"] == 0


def test_the_sweeper_counts_as_settled_only_what_it_settled_itself() -> None:
    """A reservation the task's own end settles while the sweeper waits for its user's lock
    was read as left behind, but settled by the other: the sweeper's count leaves it out."""
    from app.db.tables import tasks
    from app.db.transaction import transaction
    from app.quota import service as quota
    from tests.support.lock_waits import wait_for_a_lock_wait

    pipeline = new_pipeline([{"id": "a", "type": "sim", "duration_ms": 1}], cost=1)
    user = Customer(quota=1)
    task_id = user.create(pipeline).json()["id"]
    with transaction() as conn:
        conn.execute(update(tasks).where(tasks.c.id == task_id).values(status="succeeded"))

    reports: list[dict[str, int]] = []
    sweeper = threading.Thread(target=lambda: reports.append(sweep()))
    with transaction() as conn:
        assert quota.confirm(task_id, tx=conn).changed  # holds the user's lock until commit
        sweeper.start()
        wait_for_a_lock_wait()
    sweeper.join(30)

    assert reports and reports[0]["settled"] == 0 and reports[0]["failed"] == 0, reports
    assert reservations()[task_id] == "confirmed"
    assert user.quota() == (0, 0)


def test_the_sweeper_runs_as_a_timer_function_and_as_an_admin_job() -> None:
    from tests.support.function_url import call
    from tests.support.functions import admin_job, handler
    from tests.support.pipelines import token_for
    from tests.support.quota import new_user

    report = handler("saga-sweeper")(
        {"Type": "Timer", "TriggerName": "saga-sweeper", "Time": "2026-11-29T00:00:00Z"}, {}
    )
    assert report["job"] == "saga-sweeper"
    assert set(report) == {
        "job",
        "expired",
        "republished",
        "settled",
        "keys_purged",
        "ended_sessions_purged",
        "released",
        "failed",
        "stopped_early",
    }

    admin = token_for(new_user(role="admin"), role="admin")
    run = handler("admin-jobs-run")
    reply = admin_job("saga-sweeper", admin)
    assert reply.status == 200
    assert reply.json()["job"] == "saga-sweeper" and "settled" in reply.json()
    refill = call(
        run,
        "POST",
        "/admin/jobs/invite-refill",
        token=admin,
    )
    assert refill.status == 200 and refill.json()["job"] == "invite-refill"
    unknown = call(run, "POST", "/admin/jobs/nope", token=admin)
    assert unknown.status == 404 and unknown.json()["code"] == "NOT_FOUND"
    user = token_for(new_user())
    forbidden = call(run, "POST", "/admin/jobs/saga-sweeper", token=user)
    assert forbidden.status == 403


def test_expired_idempotency_keys_are_purged_and_the_key_works_again() -> None:
    from app.clock import utcnow
    from app.db.tables import idempotency_keys
    from app.db.transaction import transaction

    pipeline = new_pipeline([{"id": "a", "type": "sim", "duration_ms": 1}], cost=1)
    user = Customer(quota=3)
    first = user.create(pipeline, key="old-key").json()["id"]
    with transaction() as conn:
        conn.execute(
            update(idempotency_keys)
            .where(idempotency_keys.c.user_id == user.id)
            .values(expires_at=utcnow())
        )
    # Reuse after 24 h is a new request
    second = user.create(pipeline, key="old-key")
    assert second.status == 201 and second.json()["id"] != first
    with transaction() as conn:
        conn.execute(
            update(idempotency_keys)
            .where(idempotency_keys.c.user_id == user.id)
            .values(expires_at=utcnow())
        )
    assert sweep()["keys_purged"] >= 1
    with transaction() as conn:
        left = conn.execute(
            select(idempotency_keys.c.user_id).where(idempotency_keys.c.user_id == user.id)
        ).all()
    assert left == []  # the expired row itself is gone


def test_a_malformed_message_is_dropped(worker: Worker) -> None:
    from app.queue import publish

    dead_before = worker.broker.stats()["dead"]
    for message in ({"kind": "nope"}, {"kind": "step", "task_id": "x", "step": "0"}):
        publish("pipeline-worker", message)
    publish("pipeline-worker", {"kind": "step", "task_id": "unknown-task", "step": 0})
    worker.wait_idle()
    assert worker.broker.stats()["dead"] == dead_before  # dropped, not failed


def test_a_task_the_sweeper_cannot_end_stops_neither_the_others_nor_later_stages() -> None:
    from app.clock import utcnow
    from app.db.tables import tasks
    from app.db.transaction import transaction

    pipeline = new_pipeline([{"id": "a", "type": "sim", "duration_ms": 1}], cost=1)
    user = Customer(quota=2)
    stuck, other = (user.create(pipeline).json()["id"] for _ in range(2))
    old = utcnow().replace(year=2020)
    with transaction() as conn:
        conn.execute(update(tasks).where(tasks.c.id.in_([stuck, other])).values(created_at=old))
        # The database refuses any change to one task's row, as a broken row would.
        conn.execute(
            text(
                "CREATE TRIGGER refuse_stuck BEFORE UPDATE ON tasks FOR EACH ROW "
                f"IF OLD.id = '{stuck}' THEN SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'refused'; "
                "END IF"
            )
        )
    try:
        with settings_env(TASK_MAX_RUNTIME_S="1"), capture_logs() as logs:
            report = sweep()
    finally:
        with transaction() as conn:
            conn.execute(text("DROP TRIGGER refuse_stuck"))

    assert report["expired"] == 1 and report["failed"] == 1
    assert user.get(other).json()["status"] == "failed"
    assert user.get(stuck).json()["status"] == "queued"
    assert user.quota() == (1, 1)  # the other's cost refunded; the stuck one's still reserved
    (failure,) = logs.where(message="sweep of a task failed")
    assert (failure["level"], failure["task_id"], failure["stage"]) == ("error", stuck, "expire")
    assert "refused" not in logs.text  # the database's message stays out of the log
    assert logs.where(message="saga sweep")  # the pass went on to its end
