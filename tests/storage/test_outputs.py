"""Outputs kept out of the database: an answer larger than STORAGE_INLINE_MAX_BYTES is
written to `tasks/{task_id}/...` before its row settles, every view shows it as
StoredOutput whose URL returns the exact JSON, the next call's `previous` carries it, and a
duplicate message writes nothing again."""

from __future__ import annotations

import json
from typing import Any

import requests
from sqlalchemy import select

from app.db.tables import task_steps
from app.db.transaction import transaction
from app.pipeline import messages
from app.storage.store import store
from tests.fakes.cos import FakeCos
from tests.fakes.upstream import Answer, FakeUpstream
from tests.support.pipelines import Customer, Worker, new_fork, new_pipeline
from tests.support.settings import settings_env

BIG = {"image": "A" * 20_000, "caption": "说明"}


def objects(task_id: str) -> list[str]:
    return sorted(o.key for o in store().listing(f"tasks/{task_id}/").objects)


def test_a_large_answer_is_stored_and_shown_as_stored_output(cos: FakeCos, worker: Worker) -> None:
    customer = Customer(quota=5)
    with FakeUpstream() as upstream:
        upstream.script("/draw", lambda _c: Answer(200, BIG))
        upstream.script("/small", lambda _c: Answer(200, {"ok": True}))
        pipeline = new_pipeline(
            [
                {"id": "draw", "type": "http", "url": upstream.url("/draw")},
                {"id": "after", "type": "http", "url": upstream.url("/small")},
            ]
        )
        task = customer.wait(customer.create(pipeline, {}).json()["id"])
        [after] = upstream.calls_to("/small")
    assert task["status"] == "succeeded"
    exact = json.dumps(BIG, ensure_ascii=False, separators=(",", ":")).encode()
    draw = task["steps"][0]["output"]
    assert draw["stored"] is True and draw["size_bytes"] == len(exact)
    assert set(draw) == {"stored", "url", "size_bytes", "expires_at"}
    assert requests.get(draw["url"], timeout=10).content == exact
    # the next step's call carries the same StoredOutput shape, with a working URL
    previous = after.body["previous"]
    assert previous["stored"] is True and requests.get(previous["url"], timeout=10).content == exact
    assert task["steps"][1]["output"] == {"ok": True} and task["output"] == {"ok": True}
    # the row holds only the reference
    with transaction() as tx:
        row = tx.execute(
            select(task_steps.c.output).where(
                task_steps.c.task_id == task["id"], task_steps.c.step_id == "draw"
            )
        ).scalar_one()
    assert row == {
        "stored": True,
        "key": f"tasks/{task['id']}/draw.-.json",
        "size_bytes": len(exact),
    }
    assert objects(task["id"]) == [f"tasks/{task['id']}/draw.-.json"]
    # a duplicate message for the settled step writes nothing again
    puts = cos.count("PutObject")
    messages.publish_step(task["id"], 0)
    worker.wait_idle()
    assert cos.count("PutObject") == puts and objects(task["id"]) == [
        f"tasks/{task['id']}/draw.-.json"
    ]


def test_small_answers_stay_inline(cos: FakeCos, worker: Worker) -> None:
    customer = Customer(quota=5)
    with FakeUpstream() as upstream:
        upstream.script("/small", lambda _c: Answer(200, {"ok": True}))
        pipeline = new_pipeline([{"id": "s", "type": "http", "url": upstream.url("/small")}])
        task = customer.wait(customer.create(pipeline, {}).json()["id"])
    assert task["output"] == {"ok": True} and objects(task["id"]) == []


def test_large_branches_and_a_large_fork_are_stored(cos: FakeCos, worker: Worker) -> None:
    customer = Customer(quota=5)
    with FakeUpstream() as upstream:
        upstream.script("/render", lambda c: Answer(200, {"n": c.body["branch"], **BIG}))
        pipeline = new_fork(upstream.url("/render"))
        task = customer.wait(customer.create(pipeline, {"items": [1, 2, 3]}).json()["id"])
    assert task["status"] == "succeeded"
    fork = task["steps"][0]
    assert all(b["output"]["stored"] is True for b in fork["branches"])
    # the fork's results hold the branches' references: small enough to stay inline
    assert [r["status"] for r in fork["output"]] == ["fulfilled"] * 3
    for index, result in enumerate(fork["output"]):
        got = requests.get(result["value"]["url"], timeout=10).json()
        assert got["n"] == index
    assert objects(task["id"]) == [f"tasks/{task['id']}/f.{i}.json" for i in range(3)]


def test_a_bucket_that_cannot_be_written_keeps_the_answer_inline(
    cos: FakeCos, worker: Worker
) -> None:
    """The upstream's answer is paid for: it is never asked for again because COS failed."""
    customer = Customer(quota=5)
    cos.fail_next("PutObject", 500, times=2)  # the first put and the adapter's retry
    with FakeUpstream() as upstream:
        upstream.script("/draw", lambda _c: Answer(200, BIG))
        pipeline = new_pipeline(
            [{"id": "draw", "type": "http", "url": upstream.url("/draw"), "retries": 0}]
        )
        task = customer.wait(customer.create(pipeline, {}).json()["id"])
        assert len(upstream.calls_to("/draw")) == 1
    assert task["status"] == "succeeded"
    assert task["output"] == BIG and task["steps"][0]["output"] == BIG
    assert objects(task["id"]) == []


def test_fork_results_too_large_together_keep_each_value_behind_its_own_url(
    cos: FakeCos, worker: Worker
) -> None:
    """Three branch answers of 10 KB fit inline one by one, not together: the fork's
    results keep each value as a reference, and every one opens to its exact JSON (the
    20 KB one was stored by its branch already)."""
    customer = Customer(quota=5)
    sizes = [10_000, 20_000, 10_000]

    def answer(call: Any) -> Answer:
        return Answer(200, {"n": call.body["branch"], "pad": "p" * sizes[call.body["branch"]]})

    with FakeUpstream() as upstream:
        upstream.script("/render", answer)
        pipeline = new_fork(upstream.url("/render"))
        task = customer.wait(customer.create(pipeline, {"items": [0, 1, 2]}).json()["id"])
    assert task["status"] == "succeeded"
    fork = task["steps"][0]
    assert [b["output"].get("stored", False) for b in fork["branches"]] == [False, True, False]
    for index, result in enumerate(fork["output"]):
        assert result["status"] == "fulfilled" and result["value"]["stored"] is True
        assert requests.get(result["value"]["url"], timeout=10).json()["n"] == index
    # the task's output is the fork's: the same values behind fresh URLs
    sizes_shown = [r["value"]["size_bytes"] for r in fork["output"]]
    assert [r["value"]["size_bytes"] for r in task["output"]] == sizes_shown


def test_fork_results_stop_writing_once_the_bucket_fails_and_stay_inline(
    cos: FakeCos, worker: Worker
) -> None:
    """The JOIN writes the fork's results under the fork row's lock: once one value cannot
    be written (after the adapter's retry), the rest stay inline without asking a failing
    bucket again, each waiting out its own timeout and retry while the lock is held."""
    customer = Customer(quota=5)
    answers = [padded(i, 4_000) for i in range(8)]  # 32 KB together: one write per value
    with FakeUpstream() as upstream:
        upstream.script("/render", lambda c: Answer(200, answers[c.body["branch"]]))
        pipeline = new_fork(upstream.url("/render"))
        cos.fail_after("PutObject", 0)
        try:
            task = customer.wait(customer.create(pipeline, {"items": list(range(8))}).json()["id"])
        finally:
            cos.heal()
    assert task["status"] == "succeeded", task
    assert task["output"] == [{"status": "fulfilled", "value": a} for a in answers]
    assert cos.count("PutObject") == 2  # the first value's write and its retry, no more
    assert objects(task["id"]) == []


def opened(value: Any) -> Any:
    """A rendered value as its reader gets it: a StoredOutput is fetched from its URL."""
    if isinstance(value, dict) and value.get("stored") is True:
        assert set(value) == {"stored", "url", "size_bytes", "expires_at"}, value
        return requests.get(value["url"], timeout=10).json()
    return value


def padded(branch: int, size: int) -> dict[str, Any]:
    """An answer whose compact JSON is `size` bytes."""
    bare = len(json.dumps({"n": branch, "pad": ""}, separators=(",", ":")))
    return {"n": branch, "pad": "p" * (size - bare)}


def test_fork_results_of_many_small_values_open_to_every_value(
    cos: FakeCos, worker: Worker
) -> None:
    """One 20 KB answer (stored by its branch) and 70 of about 230 bytes: together too large
    inline, and none of the small ones over RESULT_INLINE_BYTES. Every value reaches the
    fork's readers (the task's view and the next step's `previous`) as itself or behind a
    URL, never as a bare bucket key."""
    customer = Customer(quota=5)
    answers = [padded(0, 20_000)] + [padded(i, 230) for i in range(1, 71)]
    with FakeUpstream() as upstream:
        upstream.script("/render", lambda c: Answer(200, answers[c.body["branch"]]))
        upstream.script("/after", lambda _c: Answer(200, {"ok": True}))
        step = {"type": "http", "url": upstream.url("/render")}
        pipeline = new_pipeline(
            [
                {"id": "f", "type": "fork", "for_each": "input.items", "step": step},
                {"id": "after", "type": "http", "url": upstream.url("/after")},
            ]
        )
        task = customer.wait(customer.create(pipeline, {"items": list(range(71))}).json()["id"])
        [after] = upstream.calls_to("/after")
    assert task["status"] == "succeeded", task
    expected = [{"status": "fulfilled", "value": answer} for answer in answers]
    for shown in (task["steps"][0]["output"], after.body["previous"]):
        results = opened(shown)
        assert [{**r, "value": opened(r["value"])} for r in results] == expected
    # every value behind its own object (the first one its branch's), and nothing else
    assert objects(task["id"]) == sorted(f"tasks/{task['id']}/f.{i}.json" for i in range(71))


def test_fork_results_too_wide_even_as_references_are_one_object_of_the_values(
    cos: FakeCos, worker: Worker
) -> None:
    """Twelve values, half over RESULT_INLINE_BYTES, under a 1 KiB inline limit that even
    twelve references exceed: the list is written whole with the values in it, and no
    object per value."""
    customer = Customer(quota=5)
    answers = [padded(i, 300 if i % 2 else 200) for i in range(12)]
    with settings_env(STORAGE_INLINE_MAX_BYTES="1024"), FakeUpstream() as upstream:
        upstream.script("/render", lambda c: Answer(200, answers[c.body["branch"]]))
        pipeline = new_fork(upstream.url("/render"))
        task = customer.wait(customer.create(pipeline, {"items": list(range(12))}).json()["id"])
        assert task["status"] == "succeeded", task
        assert opened(task["output"]) == [{"status": "fulfilled", "value": a} for a in answers]
    assert objects(task["id"]) == [f"tasks/{task['id']}/f.-.json"]


def test_an_answer_shaped_like_a_reference_leaving_the_task_prefix_is_shown_as_it_is(
    cos: FakeCos, worker: Worker
) -> None:
    """An upstream sees every task it serves, so it knows other tasks' ids. A reference-shaped
    answer whose key starts with its own task's prefix but climbs out of it (`..`, another
    folder, a name the runner never writes) is its answer, not ours: no presigned GET for it,
    neither in the task's view nor in the next call's `previous`."""
    customer = Customer(quota=10)
    with FakeUpstream() as upstream:
        upstream.script("/draw", lambda _c: Answer(200, BIG))
        victim = customer.wait(
            customer.create(
                new_pipeline([{"id": "draw", "type": "http", "url": upstream.url("/draw")}]), {}
            ).json()["id"]
        )
        stolen = f"tasks/{victim['id']}/draw.-.json"
        assert objects(victim["id"]) == [stolen]
        forged: list[dict[str, Any]] = []

        def forge(call: Any) -> Answer:
            own = f"tasks/{call.body['task_id']}/"
            keys = [
                f"{own}../{victim['id']}/draw.-.json",
                f"{own}x/../../{victim['id']}/draw.-.json",
                f"{own}%2e%2e/{victim['id']}/draw.-.json",
                f"{own}../../uploads/someone/object",
                f"{own}draw.-.json/../../{victim['id']}/draw.-.json",
            ]
            forged[:] = [{"stored": True, "key": key, "size_bytes": 10} for key in keys]
            return Answer(200, forged[call.body["branch"]])

        upstream.script("/forge", forge)
        upstream.script("/next", lambda _c: Answer(200, {"ok": True}))
        pipeline = new_pipeline(
            [
                {
                    "id": "f",
                    "type": "fork",
                    "for_each": "input.items",
                    "step": {"type": "http", "url": upstream.url("/forge")},
                },
                {"id": "next", "type": "http", "url": upstream.url("/next")},
            ]
        )
        task = customer.wait(customer.create(pipeline, {"items": [0, 1, 2, 3, 4]}).json()["id"])
        [after] = upstream.calls_to("/next")
    assert task["status"] == "succeeded"
    fork = task["steps"][0]
    assert [b["output"] for b in fork["branches"]] == forged
    assert [r["value"] for r in fork["output"]] == forged
    assert [r["value"] for r in after.body["previous"]] == forged
    assert "url" not in json.dumps([task, after.body["previous"]])
