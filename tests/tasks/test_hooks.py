"""The task-updated hook follows each committed transition, once, and never decides it: a
hook that fails is logged, the transition stands; a transition rolled back announces
nothing."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.pipelines import Customer, Worker, new_pipeline

QUICK = [{"id": "a", "type": "sim", "duration_ms": 1}]


@pytest.fixture
def announced(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The statuses announced, by a hook that fails each time it is called."""
    from app.tasks import hooks

    seen: list[str] = []

    def broken(view: dict[str, Any]) -> None:
        seen.append(view["status"])
        raise ConnectionError("the push service is down")

    monkeypatch.setattr(hooks, "task_updated", broken)
    return seen


def test_a_failing_hook_neither_fails_nor_undoes_a_cancel(announced: list[str]) -> None:
    user = Customer(quota=1)
    task_id = user.create(new_pipeline(QUICK)).json()["id"]  # no worker: it stays queued

    reply = user.cancel(task_id)

    assert reply.status == 200 and reply.json()["status"] == "cancelled"
    assert user.get(task_id).json()["status"] == "cancelled"
    assert announced == ["queued", "cancelled"]
    assert user.quota() == (1, 0)

    again = user.cancel(task_id)  # refused and rolled back: nothing to announce
    assert again.status == 409
    assert announced == ["queued", "cancelled"]


def test_a_failing_hook_neither_fails_nor_undoes_a_run(
    worker: Worker, announced: list[str]
) -> None:
    user = Customer(quota=1)

    task = user.wait(user.create(new_pipeline(QUICK)).json()["id"])
    worker.wait_idle()

    assert task["status"] == "succeeded"
    assert announced == ["queued", "running", "succeeded"]
    assert user.quota() == (0, 0)
