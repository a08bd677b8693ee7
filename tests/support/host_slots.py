"""Host slots in a race test: another instance's call that takes a host's only slot and
holds it in flight, the sign that a claimed row found its host full, and Redis gone while
a slot's holder stalls."""

from __future__ import annotations

import http.client
import threading
import time
from datetime import datetime

from app.clock import utcnow
from app.db.transaction import transaction
from app.runner import calls, rows, slots, sweeper
from tests.fakes.upstream import Answer, Call, FakeUpstream
from tests.support.local_cloud import wait_for
from tests.support.lock_waits import RowLock, wait_for_a_lock_wait
from tests.support.pipelines import Worker
from tests.support.settings import redis_down, settings_env


def given_back_since(task_id: str, branch: int, since: datetime) -> bool:
    """The row (position 0) is pending again, its claim's call not counted, and was touched
    after `since`: its claim found no slot to call with and went back to the queue, and
    each return of its message finds the host still full."""
    with transaction() as tx:
        row = rows.step_row(tx, task_id, 0, branch)
    assert row is not None
    return row["status"] == "pending" and row["attempts"] == 0 and row["updated_at"] > since


class OtherCaller:
    """Another instance's call to the same host: it takes the host's only slot (free once
    the stalled holder's lease ran out) and holds a call in flight until `end`."""

    def __init__(self, upstream: FakeUpstream) -> None:
        self.host = f"127.0.0.1:{upstream.port}"
        self.port = upstream.port
        self.hold = threading.Event()
        upstream.script("/other", self._answer)
        self.token: str | None = None
        self._thread = threading.Thread(target=self._call)

    def _answer(self, _call: Call) -> Answer:
        return Answer(200, {}) if self.hold.wait(30) else Answer(500)

    def _call(self) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            connection.request("POST", "/other", body=b"{}")
            connection.getresponse().read()
        finally:
            connection.close()

    def start(self) -> None:
        self.token = slots.acquire(self.host, cap=1, lease_s=60)
        assert self.token is not None, "the stalled holder's slot was not free"
        self._thread.start()

    def end(self) -> None:
        self.hold.set()
        self._thread.join()
        assert self.token is not None
        slots.release(self.host, self.token)


def stalled_past_the_lease(lock: RowLock, other: OtherCaller, upstream: FakeUpstream) -> datetime:
    """Keep the slot's holder waiting for `lock` until the slot's lease ran out and `other`
    took the host's only slot and has a call in flight; then let it go on. When it was let go."""
    try:
        wait_for_a_lock_wait()
        assert wait_for(lambda: slots.in_use(other.host) == 0)  # its lease ran out
        other.start()
        assert wait_for(lambda: upstream.in_flight == 1)
    finally:
        released = utcnow()
        lock.release()
    return released


def redis_gone_while_stalled(lock: RowLock, worker: Worker) -> None:
    """Keep the slot's holder waiting for `lock` while Redis goes away, past
    calls.SLOT_REUSE_S so that its slot is asked of Redis again rather than reused as it is;
    then let it go on, and every delivery of its message fail while Redis is away. Once
    Redis is back the sweeper sends the stalled step again."""
    try:
        wait_for_a_lock_wait()
        with redis_down():
            time.sleep(calls.SLOT_REUSE_S + 0.2)
            lock.release()
            worker.wait_idle()
    finally:
        lock.release()
    with settings_env(PIPELINE_STALL_S="0"):
        sweeper.sweep()
