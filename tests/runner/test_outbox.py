"""The runner's messages go out after the commit that makes them valid, never after a
rollback; a publish that fails leaves the commit and the other messages be, and is raised
once they have gone, for the platform to deliver the worker's own message again."""

from __future__ import annotations

import pytest
from sqlalchemy import insert, select

from app.clock import utcnow
from app.db.tables import users
from app.db.transaction import transaction
from app.ids import new_id
from app.pipeline.messages import Work
from app.runner.outbox import committing
from tests.support.queue import Recorder


def test_a_message_goes_out_after_the_commit(queue: Recorder) -> None:
    with committing() as out:
        out.publish(Work("t1", 0))
        out.publish(Work("t1", 1, branch=4, width=5))
        assert queue.sent == []
    assert queue.sent == [
        {"kind": "step", "task_id": "t1", "step": 0},
        {"kind": "branch", "task_id": "t1", "step": 1, "branch": 4, "width": 5},
    ]


def test_a_message_of_a_rolled_back_transaction_never_goes_out(queue: Recorder) -> None:
    with pytest.raises(LookupError), committing() as out:
        out.publish(Work("t1", 0))
        raise LookupError("the unit of work failed")
    assert queue.sent == []


def test_a_failed_publish_is_raised_after_the_commit_and_the_other_messages(
    queue: Recorder,
) -> None:
    queue.refuse = {1}
    user_id, now = new_id(), utcnow()
    with pytest.raises(ConnectionError), committing() as out:
        out.tx.execute(insert(users).values(id=user_id, created_at=now, updated_at=now))
        for branch in (0, 1, 2):
            out.publish(Work("t1", 0, branch=branch))

    assert [m["branch"] for m in queue.sent] == [0, 2]
    with transaction() as tx:
        stored = tx.execute(select(users.c.id).where(users.c.id == user_id)).first()
    assert stored is not None  # committed all the same
