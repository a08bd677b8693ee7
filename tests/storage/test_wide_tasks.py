"""`GET /tasks/{id}` fits in one synchronous SCF answer however wide the task: its inline
limit shrinks with its rows (app.storage.shares), outputs past it go to COS as larger ones
do, and a task whose rows alone could not fit is refused at `POST /tasks`."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

import requests
from sqlalchemy import func, select

from app import json_values
from app.db.tables import tasks
from app.db.transaction import transaction
from app.storage import outputs, shares
from app.storage.store import store
from app.tasks.lifecycle import step_failed
from app.tasks.views import task_view
from tests.fakes.cos import FakeCos
from tests.fakes.upstream import Answer, FakeUpstream
from tests.support.pipelines import Customer, Worker, new_pipeline
from tests.support.settings import settings_env

EMOJI = "\U0001f600"


def emoji_answer(branch: int) -> dict[str, Any]:
    """Just under STORAGE_INLINE_MAX_BYTES (16384) of compact JSON, nearly all emoji: three
    times as large in SCF's answer."""
    bare = len(json_values.encode({"n": branch, "x": ""}))
    value = {"n": branch, "x": EMOJI * ((16383 - bare) // 4)}
    assert 16380 <= len(json_values.encode(value)) <= 16384
    return value


def exact(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def is_stored(value: Any) -> bool:
    return isinstance(value, dict) and set(value) == {"stored", "url", "size_bytes", "expires_at"}


def opens_to(shown: Any, value: Any) -> bool:
    data = exact(value)
    got = requests.get(shown["url"], timeout=10).content
    return bool(is_stored(shown) and shown["size_bytes"] == len(data) and got == data)


def objects(task_id: str) -> list[str]:
    return sorted(o.key for o in store().listing(f"tasks/{task_id}/").objects)


def scf_answer_bytes(body: str) -> int:
    """The answer as SCF carries it: the body a JSON string in the payload, ASCII only."""
    return len(json.dumps({"isBase64Encoded": False, "statusCode": 200, "body": body}))


def fork(step_id: str, url: str) -> dict[str, Any]:
    return {
        "id": step_id,
        "type": "fork",
        "for_each": "input.items",
        "step": {"type": "http", "url": url, "retries": 0},
    }


def test_two_forks_of_a_hundred_emoji_answers_fit_one_answer(cos: FakeCos, worker: Worker) -> None:
    """200 branches answering 16 KiB of emoji each: about 10 MB of answer inline. Their
    share of the view is about 9 KB, so every one is a StoredOutput opening to its exact
    JSON, and the whole view is under SCF's 6 MB."""
    customer = Customer(quota=1)
    with FakeUpstream() as upstream:
        upstream.script("/emoji", lambda c: Answer(200, emoji_answer(c.body["branch"])))
        pipeline = new_pipeline(
            [fork("a", upstream.url("/emoji")), fork("b", upstream.url("/emoji"))]
        )
        created = customer.create(pipeline, {"items": list(range(100))})
        assert created.status == 201, created.body
        task = customer.wait(created.json()["id"], timeout=180)
    assert task["status"] == "succeeded", task["error"]
    reply = customer.get(task["id"])
    assert reply.status == 200
    assert json_values.answer_bytes(reply.json()) < json_values.SCF_ANSWER_MAX_BYTES
    assert scf_answer_bytes(reply.body) < json_values.SCF_ANSWER_MAX_BYTES
    view = reply.json()
    for step in view["steps"]:
        assert len(step["branches"]) == 100
        for branch in step["branches"]:
            assert opens_to(branch["output"], emoji_answer(branch["index"]))
        # the fork's results name the same objects as its branches
        for index, result in enumerate(step["output"]):
            assert result["status"] == "fulfilled"
            assert result["value"]["size_bytes"] == len(exact(emoji_answer(index)))
        assert opens_to(step["output"][7]["value"], emoji_answer(7))
    assert [r["value"]["size_bytes"] for r in view["output"]] == [
        r["value"]["size_bytes"] for r in view["steps"][1]["output"]
    ]
    assert objects(task["id"]) == sorted(
        f"tasks/{task['id']}/{step}.{i}.json" for step in "ab" for i in range(100)
    )


def test_a_narrow_task_keeps_its_16_kib_outputs_inline(cos: FakeCos, worker: Worker) -> None:
    """3 steps and 10 branches: outputs up to STORAGE_INLINE_MAX_BYTES stay inline, as
    before; only the fork's results, too large together, keep their values in COS."""
    customer = Customer(quota=1)
    with FakeUpstream() as upstream:
        upstream.script("/emoji", lambda c: Answer(200, emoji_answer(c.body["branch"] or 0)))
        url = upstream.url("/emoji")
        pipeline = new_pipeline(
            [
                {"id": "first", "type": "http", "url": url},
                fork("f", url),
                {"id": "last", "type": "http", "url": url},
            ]
        )
        task = customer.wait(customer.create(pipeline, {"items": list(range(10))}).json()["id"])
    assert task["status"] == "succeeded", task["error"]
    first, forked, last = task["steps"]
    assert first["output"] == emoji_answer(0) and last["output"] == emoji_answer(0)
    assert task["output"] == emoji_answer(0)
    assert [b["output"] for b in forked["branches"]] == [emoji_answer(i) for i in range(10)]
    for index, result in enumerate(forked["output"]):
        assert opens_to(result["value"], emoji_answer(index))
    assert objects(task["id"]) == sorted(f"tasks/{task['id']}/f.{i}.json" for i in range(10))


def _first_too_wide(forks: int) -> int:
    """The width at which `forks` for_each forks over one list, then a step, are refused."""
    width = 1
    while not shares.too_wide(shares.Shape(forks + 1, (width,) * forks, 0)):
        width += 1
    return width


def test_a_task_too_wide_to_show_is_refused_and_nothing_charged() -> None:
    sim = {"type": "sim", "duration_ms": 0}
    steps = [
        {"id": f"f{n}", "type": "fork", "for_each": "input.items", "step": sim} for n in range(4)
    ]
    pipeline = new_pipeline([*steps, {"id": "end", "type": "sim", "duration_ms": 0}])
    refused_at = _first_too_wide(4)
    assert refused_at <= 100  # four forks of PIPELINE_MAX_BRANCHES are too wide
    customer = Customer(quota=5)

    reply = customer.create(pipeline, {"items": list(range(refused_at))})
    assert reply.status == 422, reply.body
    error = reply.json()
    assert error["code"] == "VALIDATION_ERROR"
    [detail] = error["details"]
    assert detail["loc"] == ["body", "input"]
    rows = 5 + 4 * refused_at
    assert f"the task would have {rows} steps and fork branches" in detail["msg"]
    assert "one answer" in detail["msg"]
    assert customer.quota() == (5, 0)
    with transaction() as tx:
        count = tx.execute(select(func.count()).where(tasks.c.user_id == customer.id))
        assert count.scalar_one() == 0

    narrower = customer.create(pipeline, {"items": list(range(refused_at - 1))})
    assert narrower.status == 201, narrower.body
    assert customer.quota() == (4, 1)


# ------------------------------------------------------------ the bound itself

_LONG_SECRET_ID = "AKID" + "k" * (shares.STS_SECRET_ID_MAX_BYTES - 4)
_LONG_TOKEN = "t" * shares.STS_TOKEN_MAX_BYTES
_LATEST = datetime(9999, 12, 31, 23, 59, 59, 999_999, tzinfo=timezone.utc)


def reference(task_id: str, name: str) -> dict[str, Any]:
    """A row's reference to its object, as the row holds it."""
    return {"stored": True, "key": f"tasks/{task_id}/{name}.json", "size_bytes": 10**9}


def _answer_of(target: int) -> str:
    """A string of emoji whose JSON takes exactly `target` bytes of the answer."""
    empty = json_values.answer_bytes("")
    text = EMOJI * ((target - empty) // 12)
    text += "a" * (target - json_values.answer_bytes(text))
    assert json_values.answer_bytes(text) == target
    return text


def test_a_stored_output_under_the_longest_credentials_is_within_its_bound() -> None:
    with (
        FakeCos(secret_id=_LONG_SECRET_ID, session_token=_LONG_TOKEN) as fake,
        settings_env(**fake.settings()),
    ):
        key = "tasks/" + "x" * 22 + "/" + "s" * 64 + ".999.json"
        shown = outputs.render("x" * 22, {"stored": True, "key": key, "size_bytes": 10**9})
        assert is_stored(shown) and _LONG_TOKEN in shown["url"]
        bound = shares.stored_output_max_bytes()
        assert bound - 1000 < json_values.answer_bytes(shown) <= bound


def test_the_widest_task_allowed_shows_in_one_answer_at_its_worst() -> None:
    """Three forks as wide as the bound allows, the last step one of them: every row's
    output the largest that stays inline (in the answer, the task's share exactly), with
    the longest error besides; each fork's results as many StoredOutputs as it has
    branches, padded to the most they may show; the input 64 KiB of emoji and quotes;
    the credentials the longest Tencent documents. The answer stays under 6 MB, and one
    branch more is refused."""
    width = 1
    while not shares.too_wide(shares.Shape(3, (width + 1,) * 3, width + 1)):
        width += 1
    shape = shares.Shape(3, (width,) * 3, width)
    assert shares.too_wide(shares.Shape(3, (width, width, width + 1), width + 1))
    with (
        FakeCos(secret_id=_LONG_SECRET_ID, session_token=_LONG_TOKEN) as fake,
        settings_env(**fake.settings()),
    ):
        limits = shares.limits(shape)
        assert limits.share >= shares.stored_output_max_bytes()
        task_id = "x" * 22
        error = step_failed("e" * 10_000)
        assert len(error["message"].encode()) == json_values.ERROR_MESSAGE_MAX_BYTES
        row_output = {"x": _answer_of(limits.share - json_values.answer_bytes({"x": ""}))}
        assert outputs.keep(task_id, "s.-", row_output, limits.row) is row_output

        rows: list[dict[str, Any]] = []
        step_outputs = []
        for position in range(3):
            step_id = f"{position}" + "s" * 63
            # as many values as fit the limits are references (each shown as a whole
            # StoredOutput), the last one the most emoji either limit lets in: what the
            # answer may show, or STORAGE_INLINE_MAX_BYTES of JSON
            allowed = limits.results(width)
            results: list[dict[str, Any]] = [
                {"status": "fulfilled", "value": 0} for _ in range(width)
            ]
            for index in range(width - 1):
                was = results[index]
                results[index] = {
                    "status": "fulfilled",
                    "value": reference(task_id, f"{step_id}.{index}"),
                }
                fits = len(json_values.encode(results)) <= allowed.max_bytes
                if not fits or outputs.shown_bytes(task_id, results) > allowed.max_answer_bytes:
                    results[index] = was
                    break
            room = allowed.max_answer_bytes - outputs.shown_bytes(task_id, results)
            spare = allowed.max_bytes - len(json_values.encode(results))
            results[-1]["value"] = EMOJI * min(room // 12, spare // 4)
            shown = outputs.shown_bytes(task_id, results)
            compact = len(json_values.encode(results))
            assert shown > allowed.max_answer_bytes - 14 or compact > allowed.max_bytes - 6
            assert outputs.keep_results(task_id, step_id, results, allowed) is results
            step_outputs.append(results)
            rows.append(
                {
                    "position": position,
                    "branch": -1,
                    "step_id": step_id,
                    "type": "fork",
                    "status": "succeeded",
                    "output": results,
                    "error": error,
                }
            )
            rows += [
                {
                    "position": position,
                    "branch": index,
                    "step_id": step_id,
                    "type": "http",
                    "status": "succeeded",
                    "output": row_output,
                    "error": error,
                }
                for index in range(width)
            ]
        quotes = {"x": ""}
        quotes["x"] = f'{EMOJI}"' * ((json_values.TASK_INPUT_MAX_BYTES - 8) // 6)
        assert len(json_values.encode(quotes)) > json_values.TASK_INPUT_MAX_BYTES - 6
        task = {
            "id": task_id,
            "user_id": "u" * 22,
            "pipeline_id": "p" * 64,
            "status": "succeeded",
            "cost": 2**31 - 1,
            "input": quotes,
            "output": step_outputs[-1],
            "error": error,
            "created_at": _LATEST,
            "updated_at": _LATEST,
            "finished_at": _LATEST,
        }
        view = task_view(task, rows)
    assert sum(len(step["branches"]) for step in view["steps"]) == 3 * width
    assert is_stored(view["steps"][0]["output"][0]["value"])
    size = json_values.answer_bytes(view)
    assert size <= shares.VIEW_MAX_ANSWER_BYTES < json_values.SCF_ANSWER_MAX_BYTES
