"""The local cloud runs asynchronous invocations the way SCF runs instances: as many at once
as configured (LOCAL_ASYNC_CONCURRENCY), no more. A module of its own: another local cloud
in the process would subscribe the worker a second time."""

from __future__ import annotations

from typing import Any

import requests

from tests.fakes.upstream import Answer, FakeUpstream
from tests.support.functions import ROOT
from tests.support.local_cloud import local_cloud
from tests.support.pipelines import new_pipeline, token_for
from tests.support.quota import new_user
from tests.tasks.test_local_cloud_e2e import wait_for_end


def test_asynchronous_invocations_run_as_many_at_once_as_configured(redis_db: Any) -> None:
    """SCF runs an instance per asynchronous invocation: the local cloud runs its configured
    number at once. Seen in what reaches the upstream, not in how long it takes: each call is
    held until the test has seen how many are in flight."""
    with (
        local_cloud((ROOT / "serverless.yml",), timers=False, async_concurrency=4) as running,
        FakeUpstream() as upstream,
    ):
        upstream.script("/slow", lambda c: Answer(200, {"ok": True}, delay_s=0.4))
        pipeline = new_pipeline([{"id": "call", "type": "http", "url": upstream.url("/slow")}])
        token = token_for(new_user(quota=8))
        ids = [
            requests.post(
                f"{running.url}/tasks",
                json={"pipeline_id": pipeline, "input": {}},
                headers={"Authorization": f"Bearer {token}"},
                timeout=10,
            ).json()["id"]
            for _ in range(8)
        ]
        assert {wait_for_end(running, token, task_id)["status"] for task_id in ids} == {"succeeded"}
    assert upstream.max_in_flight_to("/slow") == 4
