"""`GET /tasks` stays under SCF's 6 MB synchronous answer however large its tasks: list
items carry no steps, and a page ends early once its items pass PAGE_MAX_BYTES of JSON,
with a next_cursor that goes on from there. The largest task holds the most the policy
lets in: 64 KiB of input and a 1 MiB output."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from sqlalchemy import insert

from app import json_values
from app.clock import utcnow
from app.db.tables import tasks
from app.db.transaction import transaction
from app.ids import new_id
from app.tasks.service import PAGE_MAX_BYTES
from tests.support.function_url import call
from tests.support.functions import handler
from tests.support.pipelines import token_for
from tests.support.quota import new_user

SCF_ANSWER_MAX_BYTES = 6 * 1024 * 1024
TASKS = 12


def _largest(size: int) -> dict[str, Any]:
    """A JSON object of exactly `size` compact bytes."""
    value = {"x": ""}
    value["x"] = "y" * (size - len(json_values.encode(value)))
    assert len(json_values.encode(value)) == size
    return value


def _insert(user_id: str, task_input: Any, output: Any, count: int) -> None:
    """`count` succeeded tasks of the user, newest first by a second each."""
    now = utcnow()
    with transaction() as tx:
        tx.execute(
            insert(tasks),
            [
                {
                    "id": new_id(),
                    "user_id": user_id,
                    "pipeline_id": "p-large",
                    "status": "succeeded",
                    "cost": 1,
                    "input": task_input,
                    "output": output,
                    "steps": [],
                    "created_at": now - timedelta(seconds=n),
                    "updated_at": now,
                    "finished_at": now,
                }
                for n in range(count)
            ],
        )


def test_the_largest_tasks_page_within_the_answer_limit_and_every_one_is_reached() -> None:
    user_id = new_user()
    task_input = _largest(json_values.TASK_INPUT_MAX_BYTES)
    output = _largest(json_values.STEP_OUTPUT_MAX_BYTES)
    now = utcnow()
    made = []
    with transaction() as tx:
        for n in range(TASKS):
            task_id, at = new_id(), now - timedelta(seconds=n)
            made.append(task_id)
            tx.execute(
                insert(tasks).values(
                    id=task_id,
                    user_id=user_id,
                    pipeline_id="p-large",
                    status="succeeded",
                    cost=1,
                    input=task_input,
                    output=output,
                    steps=[],
                    created_at=at,
                    updated_at=at,
                    finished_at=at,
                )
            )
    token = token_for(user_id)
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        query: dict[str, Any] = {"limit": 100, **({"cursor": cursor} if cursor else {})}
        reply = call(handler("tasks"), "GET", "/tasks", token=token, query=query)
        assert reply.status == 200
        size = len(reply.body.encode())
        assert size < SCF_ANSWER_MAX_BYTES
        assert size < PAGE_MAX_BYTES + 64 * 1024
        page = json.loads(reply.body)
        assert all(item["steps"] is None for item in page["items"])
        seen += [item["id"] for item in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == made  # newest first, each once
    assert pages >= 3  # 12 tasks of over 1 MiB each cannot share one page


def test_the_largest_page_of_tasks_run_today_stays_under_4_2_mb() -> None:
    """Outputs larger than STORAGE_INLINE_MAX_BYTES live in COS now: an item is at most
    64 KiB of input and 16 KiB of output, and a page stops before the item that would take
    it past PAGE_MAX_BYTES: the bound the README states."""
    user_id = new_user()
    task_input = _largest(json_values.TASK_INPUT_MAX_BYTES)
    output = _largest(16384)
    _insert(user_id, task_input, output, 100)
    reply = call(handler("tasks"), "GET", "/tasks", token=token_for(user_id), query={"limit": 100})
    assert reply.status == 200
    size = len(reply.body.encode())
    assert PAGE_MAX_BYTES - 100 * 1024 < size <= PAGE_MAX_BYTES + 1024 < 4_200_000
    assert len(json.loads(reply.body)["items"]) < 100


def _escaping(size: int) -> dict[str, Any]:
    """A JSON object of at most `size` compact bytes that SCF's payload escapes the most:
    emoji (4 bytes, then `\\ud83d\\ude00` escaped) and quotes (`\\"`, then `\\\\\\"`)."""
    value = {"x": ""}
    room = size - len(json_values.encode(value))
    value["x"] = '\U0001f600"' * (room // 6)
    assert size - 6 < len(json_values.encode(value)) <= size
    return value


def test_a_page_of_text_the_answer_escapes_stays_under_the_answer_limit() -> None:
    """SCF's answer carries the body as a JSON string: its quotes are escaped again, and a
    runtime writing ASCII only makes an emoji 12 bytes. A page is bounded by what it takes
    there, not by its own JSON: 1 MiB outputs of emoji are 3 MiB each in the answer."""
    user_id = new_user()
    task_input = _escaping(json_values.TASK_INPUT_MAX_BYTES)
    output = _escaping(json_values.STEP_OUTPUT_MAX_BYTES)
    _insert(user_id, task_input, output, 4)
    token = token_for(user_id)
    cursor: str | None = None
    seen = 0
    while True:
        query: dict[str, Any] = {"limit": 100, **({"cursor": cursor} if cursor else {})}
        reply = call(handler("tasks"), "GET", "/tasks", token=token, query=query)
        assert reply.status == 200
        payload = json.dumps({"statusCode": 200, "body": reply.body})
        assert len(payload) < json_values.SCF_ANSWER_MAX_BYTES
        page = json.loads(reply.body)
        seen += len(page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == 4
