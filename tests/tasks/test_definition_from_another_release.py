"""A pipeline saved by the next release (a step field this one does not know) while this
one still serves `POST /tasks`, as during a deploy or after a rollback: `503`, nothing
created, charged or counted, and an ERROR line naming the pipeline, never a 500."""

from __future__ import annotations

from sqlalchemy import func, select, update

from app.db.tables import pipelines, tasks
from app.db.transaction import transaction
from tests.support.logs import capture_logs
from tests.support.pipelines import Customer, new_pipeline


def test_a_definition_this_release_cannot_read_is_503_and_changes_nothing() -> None:
    user = Customer(quota=5)
    pipeline = new_pipeline([{"id": "a", "type": "sim", "duration_ms": 1}], cost=2)
    with transaction() as tx:
        steps = tx.execute(select(pipelines.c.steps).where(pipelines.c.id == pipeline)).scalar()
        newer = [{**steps[0], "speed": "fast"}]  # a field of the next release
        tx.execute(update(pipelines).where(pipelines.c.id == pipeline).values(steps=newer))

    with capture_logs() as logs:
        reply = user.create(pipeline, {"prompt": "x"}, key="from-the-next-release")
    assert reply.status == 503, reply.body
    assert reply.json()["code"] == "SERVICE_UNAVAILABLE"
    assert user.quota() == (5, 0)
    with transaction() as tx:
        made = tx.execute(select(func.count()).where(tasks.c.user_id == user.id)).scalar()
    assert made == 0
    [line] = logs.where(message="pipeline definition not readable")
    assert (line["level"], line["pipeline_id"], line["errors"]) == ("error", pipeline, 1)
    assert "fast" not in logs.text
    assert logs.where(message="unhandled error") == []

    # Once this release reads it again (the deploy done, or the field gone), the same key
    # makes the task: the refusal claimed nothing.
    with transaction() as tx:
        tx.execute(update(pipelines).where(pipelines.c.id == pipeline).values(steps=steps))
    made_now = user.create(pipeline, {"prompt": "x"}, key="from-the-next-release")
    assert made_now.status == 201, made_now.body
    assert user.quota() == (3, 2)
