from __future__ import annotations

from tests.support.pipelines import Customer, Worker, new_pipeline


def test_a_sim_task_runs_to_success_and_confirms_its_quota(worker: Worker) -> None:
    pipeline = new_pipeline(
        [
            {"id": "a", "type": "sim", "duration_ms": 10},
            {
                "id": "f",
                "type": "fork",
                "for_each": "input.prompts",
                "step": {"type": "sim", "duration_ms": 10},
            },
            {"id": "z", "type": "sim", "duration_ms": 1},
        ],
        cost=2,
    )
    user = Customer(quota=5)
    reply = user.create(pipeline, {"prompts": ["x", "y", "z"]})
    assert reply.status == 201, reply.body
    task = user.wait(reply.json()["id"])
    assert task["status"] == "succeeded", task
    assert user.quota() == (3, 0)
