from __future__ import annotations

from tests.support.logs import capture_logs
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


def test_each_invocation_line_says_what_it_moved(worker: Worker) -> None:
    """No service passes numbers around: the saga's reserve lands on the creating request's
    line, the upstream work, the confirm and the finished task on the worker's lines."""
    pipeline = new_pipeline([{"id": "a", "type": "sim", "duration_ms": 1}], cost=1)
    user = Customer(quota=2)
    with capture_logs() as logs:
        reply = user.create(pipeline)
        assert reply.status == 201, reply.body
        task = user.wait(reply.json()["id"])
        worker.wait_idle()
    assert task["status"] == "succeeded", task
    (created,) = logs.where(message="invocation", task_id=task["id"])
    assert created["metrics.quota_saga_total.reserve.reserved"] == 1
    worker_lines = logs.where(message="queue message", function="pipeline-worker")
    assert sum(line.get("metrics.tasks_finished_total.succeeded", 0) for line in worker_lines) == 1
    assert (
        sum(line.get("metrics.quota_saga_total.confirm.confirmed", 0) for line in worker_lines) == 1
    )
