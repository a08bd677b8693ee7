"""Pipeline and task test support: users with quota and tokens, pipelines saved through the
catalog, the pipeline-worker function subscribed to the process's local queue broker, and
the route handlers driven with API Gateway events."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.function_url import Reply, call
from tests.support.functions import handler
from tests.support.quota import assert_ledger_consistent, counters, new_user

QUEUE = "pipeline-worker"


def token_for(user_id: str, role: str = "user") -> str:
    """An access token of a new, live session of the user, as a sign-in starts it. What the
    token may do follows the user's row (`role` is only the token's own claim)."""
    from app.identity import sessions

    return sessions.start(user_id, role=role, phone=None).access_token


class Customer:
    def __init__(self, quota: int) -> None:
        self.id = new_user(quota)
        self.token = token_for(self.id)

    def create(
        self, pipeline_id: str, task_input: dict[str, Any] | None = None, key: str | None = None
    ) -> Reply:
        headers = {"Idempotency-Key": key} if key else None
        body = {"pipeline_id": pipeline_id, "input": task_input or {}}
        return call(
            handler("tasks"), "POST", "/tasks", body=body, token=self.token, headers=headers
        )

    def get(self, task_id: str) -> Reply:
        return self._on_task("tasks-id", "GET", task_id)

    def cancel(self, task_id: str) -> Reply:
        return self._on_task("tasks-id", "POST", task_id, "/cancel")

    def _on_task(self, function: str, method: str, task_id: str, suffix: str = "") -> Reply:
        path = f"/tasks/{task_id}{suffix}"
        return call(handler(function), method, path, token=self.token)

    def list(self, **query: Any) -> Reply:
        return call(handler("tasks"), "GET", "/tasks", token=self.token, query=query)

    def quota(self) -> tuple[int, int]:
        return counters(self.id)

    def wait(self, task_id: str, timeout: float = 20.0) -> dict[str, Any]:
        """The task once it has ended (polling its own route)."""
        deadline = time.monotonic() + timeout
        while True:
            task = self.get(task_id).json()
            if task["status"] in ("succeeded", "failed", "cancelled"):
                return task
            assert time.monotonic() < deadline, f"task still {task['status']}: {task}"
            time.sleep(0.02)


def save_pipeline(pipeline_id: str, definition: dict[str, Any]) -> None:
    from app.pipeline import store
    from app.pipeline.definition import PipelineDefinition

    store.save(pipeline_id, PipelineDefinition.model_validate(definition), actor=None)


def new_pipeline(steps: list[dict[str, Any]], cost: int = 1) -> str:
    pipeline_id = "p-" + secrets.token_hex(6)
    save_pipeline(pipeline_id, {"name": pipeline_id, "cost": cost, "steps": steps})
    return pipeline_id


def new_fork(url: str, cost: int = 1, over: str = "items") -> str:
    """A pipeline of one fork `f`: an `http` call to `url` for each item of `input.<over>`."""
    step = {"type": "http", "url": url}
    return new_pipeline(
        [{"id": "f", "type": "fork", "for_each": f"input.{over}", "step": step}], cost=cost
    )


class Worker:
    """The pipeline-worker function subscribed to the local broker, as the local cloud does."""

    def __init__(self, workers: int = 16, time_limit_ms: int | None = None) -> None:
        """`time_limit_ms`: the invocations' time limit as SCF's context gives it (none by
        default: the runner keeps a budget of its own)."""
        from app.queue.local import broker

        self.broker = broker()
        self.broker.workers = max(self.broker.workers, workers)
        self.broker.backoff_s = 0.05
        self.main = handler("pipeline-worker")
        self.context: dict[str, Any] = {"function_name": "pipeline-worker", "request_id": "t"}
        if time_limit_ms is not None:
            self.context["time_limit_in_ms"] = time_limit_ms
        self.deliveries = 0

    def consume(self, message: Any, attempt: int) -> None:
        self.deliveries += 1
        self.main(json.loads(message.body), self.context)

    def start(self) -> Worker:
        self.broker.subscribe(QUEUE, "pipeline-worker", self.consume)
        return self

    def wait_idle(self, timeout: float = 30.0) -> None:
        assert self.broker.wait_idle(timeout), self.broker.stats()

    def stop(self) -> None:
        self.broker.wait_idle(30.0)
        self.broker.unsubscribe(QUEUE, "pipeline-worker")


@pytest.fixture
def worker() -> Iterator[Worker]:
    running = Worker().start()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(autouse=True)
def _drain_parked_messages() -> Iterator[None]:
    """Messages a test published with no worker subscribed would reach the next test's
    worker: hand them to a consumer that drops them."""
    yield
    from app.queue.local import broker

    b = broker()
    b.subscribe(QUEUE, "drain", lambda _message, _attempt: None)
    b.wait_idle(30.0)
    b.unsubscribe(QUEUE, "drain")


@pytest.fixture(autouse=True)
def _ledger_invariant(clean_redis: Any) -> Iterator[None]:
    """Each test starts with an empty Redis and ends with the ledger explaining every
    user's quota exactly."""
    yield
    assert_ledger_consistent()
