"""End to end through the local cloud over HTTP: the task is created by the tasks
function, its messages go through the local queue to the pipeline-worker function, and the
quota is settled as the task ends."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from tests.fakes.upstream import Answer, FakeUpstream
from tests.support.functions import ROOT
from tests.support.local_cloud import local_cloud
from tests.support.pipelines import new_pipeline, token_for
from tests.support.quota import new_user


@pytest.fixture(scope="module")
def cloud(redis_db: Any) -> Iterator[Any]:
    with local_cloud((ROOT / "serverless.yml",), timers=False, queue_backoff_s=0.05) as running:
        yield running


def wait_for_end(cloud: Any, token: str, task_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        task = requests.get(
            f"{cloud.url}/tasks/{task_id}", headers={"Authorization": f"Bearer {token}"}, timeout=10
        ).json()
        if task["status"] in ("succeeded", "failed", "cancelled"):
            return dict(task)
        time.sleep(0.05)
    raise AssertionError(f"task {task_id} did not end: {task}")


def quota_of(cloud: Any, token: str) -> dict[str, int]:
    from app.db.tables import users
    from app.db.transaction import transaction
    from app.identity.tokens import decode

    user_id = decode(token, "access")["sub"]
    with transaction() as conn:
        row = conn.execute(
            users.select()
            .with_only_columns(users.c.quota_balance, users.c.quota_reserved)
            .where(users.c.id == user_id)
        ).one()
    return {"balance": row[0], "reserved": row[1]}


def test_a_task_runs_through_the_local_queue_and_confirms_its_quota(cloud: Any) -> None:
    with FakeUpstream() as upstream:
        upstream.script("/render", lambda c: Answer(200, {"img": c.body["input"]}))
        pipeline = new_pipeline(
            [
                {"id": "draft", "type": "sim", "duration_ms": 5},
                {
                    "id": "render",
                    "type": "fork",
                    "for_each": "input.prompts",
                    "step": {"type": "http", "url": upstream.url("/render")},
                },
            ],
            cost=2,
        )
        token = token_for(new_user(quota=3))
        created = requests.post(
            f"{cloud.url}/tasks",
            json={"pipeline_id": pipeline, "input": {"prompts": ["a", "b", "c"]}},
            headers={"Authorization": f"Bearer {token}", "Idempotency-Key": "e2e-1"},
            timeout=10,
        )
        assert created.status_code == 201, created.text
        task = wait_for_end(cloud, token, created.json()["id"])

    assert task["status"] == "succeeded"
    assert [r["value"] for r in task["output"]] == [{"img": p} for p in "abc"]
    assert quota_of(cloud, token) == {"balance": 1, "reserved": 0}
    listed = requests.get(
        f"{cloud.url}/tasks?status=succeeded",
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    ).json()
    assert [t["id"] for t in listed["items"]] == [task["id"]]


def test_a_failing_pipeline_refunds(cloud: Any) -> None:
    pipeline = new_pipeline(
        [{"id": "draft", "type": "sim", "duration_ms": 5, "fail": True}], cost=2
    )
    token = token_for(new_user(quota=2))
    created = requests.post(
        f"{cloud.url}/tasks",
        json={"pipeline_id": pipeline, "input": {}},
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert created.status_code == 201
    task = wait_for_end(cloud, token, created.json()["id"])

    assert task["status"] == "failed"
    assert task["error"]["code"] == "PIPELINE_STEP_FAILED"
    assert quota_of(cloud, token) == {"balance": 2, "reserved": 0}


def test_the_demo_pipeline_runs_and_the_sweeper_job_answers(cloud: Any) -> None:
    admin = token_for(new_user(role="admin"), role="admin")
    token = token_for(new_user(quota=1))
    pipelines = requests.get(f"{cloud.url}/pipelines?limit=100", timeout=10).json()["items"]
    assert "demo" in {p["id"] for p in pipelines}
    created = requests.post(
        f"{cloud.url}/tasks",
        json={"pipeline_id": "demo"},
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert wait_for_end(cloud, token, created.json()["id"])["status"] == "succeeded"
    job = requests.post(
        f"{cloud.url}/admin/jobs/saga-sweeper",
        headers={"Authorization": f"Bearer {admin}"},
        timeout=10,
    )
    assert job.status_code == 200 and job.json()["job"] == "saga-sweeper"
    assert cloud.fire_timer("saga-sweeper")["settled"] == 0
