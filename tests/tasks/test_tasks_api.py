"""The task routes: create, read, list, cancel, and the Idempotency-Key rules."""

from __future__ import annotations

import threading

from tests.support.pipelines import Customer, Worker, new_pipeline, save_pipeline, token_for

SLOW = [{"id": "wait", "type": "sim", "duration_ms": 1500}]
QUICK = [{"id": "a", "type": "sim", "duration_ms": 1}]


def test_create_answers_201_with_the_task_and_reserves_its_cost() -> None:
    pipeline = new_pipeline(
        [
            *QUICK,
            {
                "id": "f",
                "type": "fork",
                "for_each": "input.prompts",
                "step": {"type": "sim", "duration_ms": 1},
            },
        ],
        cost=3,
    )
    user = Customer(quota=5)

    reply = user.create(pipeline, {"prompts": ["x", "y"]})

    assert reply.status == 201
    task = reply.json()
    assert task["status"] == "queued" and task["cost"] == 3
    assert task["input"] == {"prompts": ["x", "y"]}
    assert task["output"] is None and task["error"] is None and task["finished_at"] is None
    assert task["created_at"].endswith("Z")
    assert [s["id"] for s in task["steps"]] == ["a", "f"]
    assert task["steps"][0]["branches"] is None
    assert [b["index"] for b in task["steps"][1]["branches"]] == [0, 1]
    assert {b["status"] for b in task["steps"][1]["branches"]} == {"pending"}
    assert user.quota() == (2, 3)
    assert user.get(task["id"]).json()["id"] == task["id"]


def test_unknown_or_disabled_pipeline_is_404_and_charges_nothing() -> None:
    user = Customer(quota=5)
    pipeline = new_pipeline(QUICK)
    save_pipeline(pipeline, {"name": "off", "cost": 1, "enabled": False, "steps": QUICK})

    for pipeline_id in ("no-such-pipeline", pipeline):
        reply = user.create(pipeline_id)
        assert reply.status == 404
        assert reply.json()["code"] == "PIPELINE_NOT_FOUND"
    assert user.quota() == (5, 0)


def test_input_that_does_not_fit_the_pipeline_is_422() -> None:
    pipeline = new_pipeline(
        [
            {
                "id": "f",
                "type": "fork",
                "for_each": "input.prompts",
                "min_success": 2,
                "step": {"type": "sim"},
            }
        ]
    )
    user = Customer(quota=5)

    for task_input in ({}, {"prompts": "x"}, {"prompts": ["only one"]}):
        reply = user.create(pipeline, task_input)
        assert reply.status == 422, task_input
        assert reply.json()["code"] == "VALIDATION_ERROR"
        assert reply.json()["details"][0]["loc"] == ["body", "input"]
    assert user.create(pipeline, {"prompts": [1, 2]}).status == 201
    assert user.quota() == (4, 1)


def test_short_quota_is_402_and_changes_nothing() -> None:
    pipeline = new_pipeline(QUICK, cost=3)
    user = Customer(quota=2)

    reply = user.create(pipeline)

    assert reply.status == 402
    assert reply.json()["code"] == "QUOTA_INSUFFICIENT"
    assert user.quota() == (2, 0)
    assert user.list().json()["items"] == []


def test_another_users_task_is_404_everywhere() -> None:
    pipeline = new_pipeline(SLOW)
    owner, other = Customer(quota=1), Customer(quota=1)
    task_id = owner.create(pipeline).json()["id"]

    assert other.get(task_id).status == 404
    assert other.cancel(task_id).status == 404
    assert other.list().json()["items"] == []
    assert owner.get(task_id).status == 200


def test_list_pages_newest_first_and_filters_by_status() -> None:
    pipeline = new_pipeline(QUICK)
    user = Customer(quota=5)
    ids = [user.create(pipeline).json()["id"] for _ in range(5)]
    user.cancel(ids[0])

    first = user.list(limit=2).json()
    second = user.list(limit=2, cursor=first["next_cursor"]).json()
    third = user.list(limit=2, cursor=second["next_cursor"]).json()

    listed = [t["id"] for page in (first, second, third) for t in page["items"]]
    assert listed == list(reversed(ids))
    assert third["next_cursor"] is None
    assert [t["id"] for t in user.list(status="cancelled").json()["items"]] == [ids[0]]
    assert user.list(status="bogus").status == 422
    assert user.list(cursor="not-a-cursor").status == 422
    assert user.list(limit=0).status == 422


def test_cancel_refunds_answers_cancelled_and_discards_in_flight_results(worker: Worker) -> None:
    pipeline = new_pipeline(SLOW, cost=2)
    user = Customer(quota=2)
    task_id = user.create(pipeline).json()["id"]
    worker.broker.wait_idle(0.3)  # the sim step is running now

    reply = user.cancel(task_id)

    assert reply.status == 200
    assert reply.json()["status"] == "cancelled"
    assert reply.json()["steps"][0]["status"] == "cancelled"
    assert user.quota() == (2, 0)
    worker.wait_idle()
    after = user.get(task_id).json()
    assert after["status"] == "cancelled" and after["steps"][0]["output"] is None
    again = user.cancel(task_id)
    assert again.status == 409 and again.json()["code"] == "TASK_NOT_CANCELLABLE"


def test_same_key_same_body_replays_the_first_answer_and_charges_once() -> None:
    pipeline = new_pipeline(QUICK, cost=2)
    user = Customer(quota=10)

    first = user.create(pipeline, {"a": 1, "b": 2}, key="k-1")
    user.cancel(first.json()["id"])  # the task changed since; the replay is the first answer
    again = user.create(pipeline, {"b": 2, "a": 1}, key="k-1")

    assert (again.status, again.json()) == (first.status, first.json())
    assert user.list().json()["items"][0]["id"] == first.json()["id"]
    assert len(user.list().json()["items"]) == 1

    mismatch = user.create(pipeline, {"a": 2}, key="k-1")
    assert mismatch.status == 409
    assert mismatch.json()["code"] == "IDEMPOTENCY_KEY_MISMATCH"

    other_user = Customer(quota=2)
    assert other_user.create(pipeline, {"a": 1, "b": 2}, key="k-1").status == 201
    assert user.quota() == (10, 0)  # charged once, then refunded by the cancel


def test_a_key_sent_again_from_another_session_of_the_user_replays_the_first_answer() -> None:
    """A phone resumed with an ended session signs in again and sends the request whose
    answer it lost: the key is the user's, so the new session gets the first task."""
    pipeline = new_pipeline(QUICK, cost=2)
    user = Customer(quota=10)
    first = user.create(pipeline, {"a": 1}, key="k-resumed")
    user.token = token_for(user.id)
    again = user.create(pipeline, {"a": 1}, key="k-resumed")
    assert (again.status, again.json()) == (first.status, first.json())
    assert user.quota()[0] == 8  # charged once


def test_a_refused_request_does_not_burn_its_key() -> None:
    pipeline = new_pipeline(QUICK, cost=3)
    user = Customer(quota=2)
    assert user.create(pipeline, key="k-2").status == 402

    from app.quota import grant

    grant(user.id, 1, kind="admin", reason="top-up")
    assert user.create(pipeline, key="k-2").status == 201


def test_concurrent_duplicates_create_one_task() -> None:
    pipeline = new_pipeline(QUICK, cost=1)
    user = Customer(quota=10)
    replies = []
    barrier = threading.Barrier(8)

    def send() -> None:
        barrier.wait()
        replies.append(user.create(pipeline, {"n": 1}, key="dup"))

    threads = [threading.Thread(target=send) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert {r.status for r in replies} == {201}
    assert len({r.json()["id"] for r in replies}) == 1
    assert len(user.list().json()["items"]) == 1
    assert user.quota() == (9, 1)


def test_a_bad_idempotency_key_is_422() -> None:
    user = Customer(quota=1)
    reply = user.create(new_pipeline(QUICK), key="x" * 300)
    assert reply.status == 422
    assert user.quota() == (1, 0)


def test_an_id_with_a_trailing_space_is_not_the_task() -> None:
    # The database compares strings with trailing spaces ignored.
    pipeline = new_pipeline(SLOW)
    owner = Customer(quota=1)
    task_id = owner.create(pipeline).json()["id"]

    assert owner.get(task_id + " ").status == 404
    assert owner.cancel(task_id + " ").status == 404
    assert owner.get(task_id).json()["status"] == "queued"


def test_a_task_names_its_pipeline_as_stored() -> None:
    pipeline = new_pipeline(QUICK)
    user = Customer(quota=1)

    reply = user.create(pipeline + " ")

    assert reply.status == 201 and reply.json()["pipeline_id"] == pipeline
    assert user.list().json()["items"][0]["pipeline_id"] == pipeline
