"""A fork branch's successor, claimed by the settling branch and run in the same invocation
(chained), that fails after its call started is given back (running, no lease) and runs at
once when the message is delivered again, though that message is the settled branch's: the
fork's heal sends the successor again, rather than leaving it to the saga sweeper
(PIPELINE_STALL_S, minutes).

The failure is real: Redis goes away while the successor's first call is in flight, so
giving back that call's host slot fails inside `calls.run_http`."""

from __future__ import annotations

import threading

from app.db.transaction import transaction
from app.runner import rows
from tests.fakes.upstream import Answer, Call, FakeUpstream
from tests.support.local_cloud import wait_for
from tests.support.pipelines import Customer, Worker, new_fork
from tests.support.settings import redis_down, settings_env


def given_back(task_id: str, branch: int) -> bool:
    """The branch's row is running with its first call counted and no lease: its holder
    failed after the call and gave it back (`rows.give_back`)."""
    with transaction() as tx:
        row = rows.step_row(tx, task_id, 0, branch)
    assert row is not None
    return row["status"] == "running" and row["attempts"] == 1 and row["lease_until"] is None


def test_a_chained_successor_given_back_after_its_call_runs_at_once(worker: Worker) -> None:
    successor_called = threading.Event()
    redis_gone = threading.Event()

    def answer(call: Call) -> Answer:
        if call.body["branch"] == 1 and not successor_called.is_set():
            successor_called.set()
            redis_gone.wait(10)  # in flight until Redis is down
            return Answer(503, {"error": "busy"})  # retried: its slot is given back first
        return Answer(200, {"branch": call.body["branch"]})

    with FakeUpstream() as upstream, settings_env(PIPELINE_MAX_CONCURRENCY="1"):
        upstream.script("/r", answer)
        user = Customer(quota=1)
        task_id = user.create(new_fork(upstream.url("/r")), {"items": [0, 1]}).json()["id"]

        assert successor_called.wait(10)  # branch 0 settled and its invocation chained 1
        with redis_down():
            redis_gone.set()
            assert wait_for(lambda: given_back(task_id, 1))
        task = user.wait(task_id, timeout=15)  # the sweeper would take PIPELINE_STALL_S
        worker.wait_idle()

    assert task["status"] == "succeeded", task
    successor_calls = [c for c in upstream.calls_to("/r") if c.body["branch"] == 1]
    # The given-back call and the one its redelivery made: within 1 + retries (3).
    assert len(successor_calls) == 2
    assert task["steps"][0]["branches"][1]["output"] == {"branch": 1}, task
    assert user.quota() == (0, 0)
