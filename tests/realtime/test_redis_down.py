"""Redis down while a task moves (README "Realtime"): the transitions commit and the task
ends exactly as it would, `GET /tasks/{id}` shows it, and the push of each update made
meanwhile is lost: a client that connects once Redis is back is sent nothing of it."""

from __future__ import annotations

from typing import Any

from app.realtime import streams
from tests.realtime.conftest import User, open_client
from tests.support.quota import counters
from tests.support.settings import redis_down


def test_a_task_that_moves_while_redis_is_down_still_finishes_and_its_push_is_lost(
    cloud: Any, fresh_redis: Any
) -> None:
    user = User.new(quota=5)
    with redis_down():
        task_id = user.create(cloud)
        task = user.wait(cloud, task_id)

    assert task["status"] == "succeeded"
    assert user.task(cloud, task_id)["status"] == "succeeded"
    assert counters(user.id) == (4, 0)  # charged once, the reservation confirmed
    assert fresh_redis.xlen(streams.stream_key(user.id)) == 0
    client = open_client(cloud, user.token)
    assert client.ping() == {"type": "pong"}
    assert client.received == [{"type": "pong"}]

    later = user.create(cloud)  # Redis is back: pushes resume
    assert [m["data"]["status"] for m in client.until_ended(later)] == ["running", "succeeded"]
    client.close()
