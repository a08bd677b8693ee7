"""The order of one task's messages (API.md, "WebSocket"): two transitions of a task
committed one after the other run their after-commit effects independently (on SCF, in two
instances), so the later one's may reach the stream first. A message about a task never
follows one about a later state of it: the worker's `running`, held in its effect until a
cancel or the sweeper's expiry has been pushed, is not sent after it, live or on reconnect.

The hold is a filter on the hooks' logger: the effect's first act is its "task updated"
line, written in the effect's own thread, after the commit, before anything is pushed."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import requests
from sqlalchemy import update

from app.clock import utcnow
from app.db.tables import tasks
from app.db.transaction import transaction
from app.realtime import announce, streams
from app.runner.sweeper import sweep
from tests.realtime.conftest import Client, User, open_client
from tests.support.settings import settings_env

pytestmark = pytest.mark.usefixtures("fresh_redis")

# Long enough that the worker, released, is still calling its step when the test looks.
SLOW = [{"id": "a", "type": "sim", "duration_ms": 300}]


class HeldAnnouncement(logging.Filter):
    """Stops the first thread that announces a task as `status` until `release` is set;
    `task_id` is that task's."""

    def __init__(self, status: str) -> None:
        super().__init__()
        self.status = status
        self.task_id: str | None = None
        self.reached, self.release = threading.Event(), threading.Event()
        self._taken = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        fields = getattr(record, "fields", None) or {}
        if record.getMessage() == "task updated" and fields.get("status") == self.status:
            with self._taken:
                first = self.task_id is None
                if first:
                    self.task_id = str(fields.get("task_id"))
            if first:
                self.reached.set()
                self.release.wait(timeout=10)
        return True


@contextmanager
def held_announcement(status: str) -> Iterator[HeldAnnouncement]:
    logger = logging.getLogger("app.tasks.hooks")
    level = logger.level
    logger.setLevel(logging.INFO)  # the line the hold waits on is written at INFO
    held = HeldAnnouncement(status)
    logger.addFilter(held)
    try:
        yield held
    finally:
        held.release.set()
        logger.removeFilter(held)
        logger.setLevel(level)


def _running_held(cloud: Any, user: User, held: HeldAnnouncement) -> str:
    """A new task of `user`, which the worker has marked running, its message held."""
    task_id = user.create(cloud, SLOW)
    assert held.reached.wait(10), "the worker never marked the task running"
    assert held.task_id == task_id
    return task_id


def _all_of(client: Client, task_id: str) -> list[dict[str, Any]]:
    """The task's updates up to its end, and whatever of it comes within half a second
    after (nothing, when none follows its end)."""
    seen = client.until_ended(task_id)
    while not client.silent_for(0.5):
        last = client.received[-1]
        if last["type"] == "task.updated" and last["data"]["id"] == task_id:
            seen.append(last)
    return seen


def _only_the_ending_is_sent(
    cloud: Any, user: User, task_id: str, live: Client, ending: str
) -> None:
    """The task ended as `ending`, and that is all `live` was sent of it, the view
    `GET /tasks/{id}` shows; a new connection is sent the same again (none acknowledged)."""
    final = user.task(cloud, task_id)
    assert final["status"] == ending
    sent = _all_of(live, task_id)
    assert [m["data"]["status"] for m in sent] == [ending]
    assert sent[-1]["data"] == {k: final[k] for k in streams.FIELDS}
    live.close()
    again = open_client(cloud, user.token)
    assert _all_of(again, task_id) == sent
    again.close()


def test_a_running_pushed_after_the_cancel_is_never_sent_after_it(cloud: Any) -> None:
    user = User.new()
    live = open_client(cloud, user.token)

    with held_announcement("running") as held:
        task_id = _running_held(cloud, user, held)
        reply = requests.post(
            f"{cloud.url}/tasks/{task_id}/cancel", headers=user.headers(), timeout=10
        )
        assert reply.status_code == 200, reply.text
        held.release.set()
        assert cloud.queue_idle(20)["idle"]  # the worker's effect has run its course

    _only_the_ending_is_sent(cloud, user, task_id, live, "cancelled")


def test_a_running_pushed_after_the_sweepers_expiry_is_never_sent_after_it(cloud: Any) -> None:
    user = User.new()
    live = open_client(cloud, user.token)

    with held_announcement("running") as held:
        task_id = _running_held(cloud, user, held)
        with transaction() as conn:  # created long ago: past any runtime
            old = utcnow().replace(year=2020)
            conn.execute(update(tasks).where(tasks.c.id == task_id).values(created_at=old))
        with settings_env(TASK_MAX_RUNTIME_S="1"):
            assert sweep()["expired"] >= 1
        held.release.set()
        assert cloud.queue_idle(20)["idle"]

    _only_the_ending_is_sent(cloud, user, task_id, live, "failed")


def test_a_users_realtime_keys_stay_bounded_however_many_tasks_it_runs(fresh_redis: Any) -> None:
    """The stage each task's messages have reached is kept for the user's latest tasks,
    STREAM_MAX of them, in keys of the user's: a user with 100k tasks a day held a key per
    task for a day. A late `running` of a recent task is still dropped."""
    user = User.new()
    tasks_run = 3 * streams.STREAM_MAX
    for number in range(tasks_run):
        task = {"id": f"task-{number}", "status": "running"}
        assert streams.append(user.id, task, announce.STAGE["running"]) is not None
        ended = {**task, "status": "succeeded"}
        assert streams.append(user.id, ended, announce.STAGE["succeeded"]) is not None
    last = {"id": f"task-{tasks_run - 1}", "status": "running"}
    assert streams.append(user.id, last, announce.STAGE["running"]) is None

    assert fresh_redis.xlen(streams.stream_key(user.id)) == streams.STREAM_MAX
    keys = list(fresh_redis.scan_iter(match=f"realtime:*{user.id}*", count=1000))
    assert len(keys) <= 4, keys[:5]
    held = sum(fresh_redis.memory_usage(key) for key in keys)
    assert held < 512 * 1024, held  # the stream's ~1000 messages and 1000 tasks' stages
    assert all(0 < fresh_redis.pttl(key) <= streams.KEEP_MS for key in keys)


def _held(redis: Any, user_id: str) -> tuple[list[str], int]:
    """The stream's message ids, and the bytes of their JSON."""
    entries = redis.xrange(streams.stream_key(user_id))
    return [i for i, _ in entries], sum(len(f["data"].encode()) for _, f in entries)


def test_a_users_stream_holds_at_most_stream_max_bytes_of_messages(fresh_redis: Any) -> None:
    """A message carries its task's output inline up to STORAGE_INLINE_MAX_BYTES: past
    STREAM_MAX_BYTES the oldest messages go, the newest stay in order, and the count of
    bytes the script keeps is the stream's own, through trims by bytes and by count."""
    user = User.new()
    big = {"image": "B" * 16_000}
    appended = [
        streams.append(user.id, {"id": f"big-{n}", "status": "succeeded", "output": big}, 2)
        for n in range(200)
    ]
    ids, held = _held(fresh_redis, user.id)
    assert held <= streams.STREAM_MAX_BYTES
    assert held + 16_000 > streams.STREAM_MAX_BYTES  # no more went than had to
    assert ids == appended[-len(ids) :]
    assert int(fresh_redis.get(streams.bytes_key(user.id))) == held

    for n in range(streams.STREAM_MAX):
        streams.append(user.id, {"id": f"small-{n}", "status": "running"}, 1)
    ids, held = _held(fresh_redis, user.id)
    assert len(ids) == streams.STREAM_MAX
    assert int(fresh_redis.get(streams.bytes_key(user.id))) == held
    assert 0 < fresh_redis.pttl(streams.bytes_key(user.id)) <= streams.KEEP_MS
