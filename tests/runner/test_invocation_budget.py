"""The worker's calls are bounded by the invocation it runs in, as the platform says when it
ends (the context's `time_limit_in_ms`): INVOCATION_BUDGET_S at most, less when the
invocation leaves less than AFTER_LAST_CALL_S after that, so a call is cut where what
follows it (settle, publish, answer) still fits, whatever the step's own timeout."""

from __future__ import annotations

from typing import Any

from app.db.transaction import transaction
from app.runner import calls, rows
from infra import manifest
from tests.fakes.upstream import Answer, FakeUpstream
from tests.support.functions import handler
from tests.support.pipelines import Customer, new_pipeline

# What the invocation leaves for calling out: much less than the step's timeout and than
# the upstream's delay, so only the invocation's bound can end the call.
LEFT_S = 1.5
STEP_TIMEOUT_S = 30
UPSTREAM_DELAY_S = 5.0


def step_row(task_id: str) -> Any:
    with transaction() as tx:
        return rows.step_row(tx, task_id, 0)


def test_a_call_ends_where_the_invocation_leaves_room_for_what_follows_it() -> None:
    with FakeUpstream() as upstream:
        upstream.script("/slow", lambda _call: Answer(200, {"ok": 1}, delay_s=UPSTREAM_DELAY_S))
        step = {
            "id": "slow",
            "type": "http",
            "url": upstream.url("/slow"),
            "timeout_s": STEP_TIMEOUT_S,
            "retries": 0,
        }
        user = Customer(quota=1)
        task_id = user.create(new_pipeline([step])).json()["id"]  # no worker: it waits
        limit_s = calls.AFTER_LAST_CALL_S + LEFT_S
        context = {
            "function_name": "pipeline-worker",
            "request_id": "t",
            "time_limit_in_ms": int(limit_s * 1000),
        }
        handler("pipeline-worker")({"kind": "step", "task_id": task_id, "step": 0}, context)

    row = step_row(task_id)
    assert row["status"] == "failed", row
    assert "timed out (called once)" in row["error"]["message"], row
    assert len(upstream.calls_to("/slow")) == 1
    task = user.get(task_id).json()
    assert task["status"] == "failed", task


def test_the_worker_function_outlasts_its_budget_and_what_follows_its_last_call() -> None:
    timeout_s = manifest.load().functions["pipeline-worker"].timeout_s
    assert timeout_s >= calls.INVOCATION_BUDGET_S + calls.AFTER_LAST_CALL_S
