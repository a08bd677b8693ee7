"""Task input that the database could not store is refused at the door: at most 64 KiB as
compact JSON, 16 deep, finite numbers only; `422 VALIDATION_ERROR` naming the input, nothing
charged, no task. What is accepted runs to the end on MariaDB (whose JSON columns refuse
NaN and anything nested past 32) as on SQLite (which would store anything)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from app import json_values
from tests.support.function_url import call
from tests.support.functions import handler
from tests.support.pipelines import Customer, Worker, new_pipeline
from tests.support.settings import app_engine_under, settings_env

SIM = [{"id": "echo", "type": "sim", "duration_ms": 0}]


def nested(levels: int) -> dict[str, Any]:
    """An input object `levels` deep (the object itself is level 1)."""
    value: Any = 1
    for _ in range(levels - 1):
        value = [value]
    return {"v": value} if levels > 1 else {"v": 1}


def post_raw(user: Customer, text: str) -> Any:
    return call(handler("tasks"), "POST", "/tasks", raw_body=text, token=user.token)


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ('{"pipeline_id": "%s", "input": {"a": NaN}}', "NaN"),
        ('{"pipeline_id": "%s", "input": {"a": [Infinity]}}', "Infinity"),
        (json.dumps({"pipeline_id": "%s", "input": nested(17)}), "17 deep"),
        (json.dumps({"pipeline_id": "%s", "input": {"t": "x" * (64 * 1024)}}), "bytes"),
    ],
    ids=["nan", "infinity", "17-deep", "over-64-kib"],
)
def test_input_the_database_cannot_store_is_422_and_nothing_is_charged(text: str, why: str) -> None:
    pipeline = new_pipeline(SIM, cost=1)
    user = Customer(quota=1)
    reply = post_raw(user, text % pipeline)
    assert reply.status == 422, reply.body
    body = reply.json()
    assert body["code"] == "VALIDATION_ERROR"
    assert body["details"][0]["loc"][:2] == ["body", "input"]
    assert user.quota() == (1, 0)
    assert user.list().json()["items"] == []


def test_text_that_is_not_unicode_is_422_and_nothing_is_charged() -> None:
    # JSON's escapes can carry a lone surrogate, which no UTF-8 column can store: the body
    # is refused as it is read.
    pipeline = new_pipeline(SIM, cost=1)
    user = Customer(quota=1)
    reply = post_raw(user, '{"pipeline_id": "' + pipeline + '", "input": {"t": "\\ud800"}}')
    assert (reply.status, reply.json()["code"]) == (422, "VALIDATION_ERROR"), reply.body
    assert user.quota() == (1, 0)
    assert user.list().json()["items"] == []


def test_the_deepest_and_largest_input_allowed_runs_to_the_end(worker: Worker) -> None:
    pipeline = new_pipeline(SIM, cost=1)
    user = Customer(quota=2)
    deepest = user.create(pipeline, nested(16))
    assert deepest.status == 201, deepest.body
    largest = {"t": "x" * (json_values.TASK_INPUT_MAX_BYTES - len('{"t":""}'))}
    assert len(json_values.encode(largest)) == json_values.TASK_INPUT_MAX_BYTES
    biggest = user.create(pipeline, largest)
    assert biggest.status == 201, biggest.body
    # The sim step wraps the input one level deeper in its output: stored all the same.
    for reply in (deepest, biggest):
        assert user.wait(reply.json()["id"])["status"] == "succeeded"
    assert user.quota() == (0, 0)


def test_sqlite_refuses_what_mariadb_refuses(tmp_path: Path) -> None:
    from app.db import migrate

    with app_engine_under(DATABASE_URL=f"sqlite:///{tmp_path / 'app.db'}") as engine:
        migrate.upgrade(engine)
        pipeline = new_pipeline(SIM, cost=0)
        user = Customer(quota=0)
        nan = '{"pipeline_id": "' + pipeline + '", "input": {"a": NaN}}'
        assert post_raw(user, nan).status == 422
        deep = json.dumps({"pipeline_id": pipeline, "input": nested(17)})
        assert post_raw(user, deep).status == 422
        assert user.create(pipeline, nested(16)).status == 201


def test_a_task_costs_the_pipelines_cost_plus_each_forks_price_per_branch() -> None:
    fork = {
        "id": "f",
        "type": "fork",
        "for_each": "input.items",
        "step": {"type": "sim", "duration_ms": 0},
        "cost_per_branch": 2,
    }
    pipeline = new_pipeline([*SIM, fork, {**fork, "id": "g", "cost_per_branch": 1}], cost=3)
    user = Customer(quota=3 + 2 * 7 + 1 * 7)
    reply = user.create(pipeline, {"items": list(range(7))})
    assert reply.status == 201, reply.body
    assert reply.json()["cost"] == 24
    assert user.quota() == (0, 24)
    # One branch more than the balance pays for: refused, nothing charged.
    poorer = Customer(quota=23)
    refused = poorer.create(pipeline, {"items": list(range(7))})
    assert (refused.status, refused.json()["code"]) == (402, "QUOTA_INSUFFICIENT")
    assert poorer.quota() == (23, 0)


def test_a_fork_over_pipeline_max_branches_is_422_at_post_tasks() -> None:
    step = {"type": "sim", "duration_ms": 0}
    pipeline = new_pipeline([{"id": "f", "type": "fork", "for_each": "input.items", "step": step}])
    user = Customer(quota=1)
    assert user.create(pipeline, {"items": list(range(100))}).status == 201
    reply = user.create(pipeline, {"items": list(range(101))})
    assert reply.status == 422
    assert reply.json()["details"][0]["loc"] == ["body", "input"]
    assert "PIPELINE_MAX_BRANCHES" in reply.json()["details"][0]["msg"]


def test_a_branches_fork_saved_under_a_higher_limit_is_422_at_post_tasks() -> None:
    fork = {"id": "f", "type": "fork", "branches": [{"type": "sim", "duration_ms": 0}] * 3}
    pipeline = new_pipeline([fork])
    user = Customer(quota=2)
    with settings_env(PIPELINE_MAX_BRANCHES="2"):
        reply = user.create(pipeline, {})
    assert reply.status == 422, reply.body
    assert reply.json()["details"][0]["loc"] == ["body", "input"]
    assert "3 branches, at most 2 (PIPELINE_MAX_BRANCHES)" in reply.json()["details"][0]["msg"]
    assert user.quota() == (2, 0)
    assert user.list().json()["items"] == []
    assert user.create(pipeline, {}).status == 201  # within the limit again
