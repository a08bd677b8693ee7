"""An `http` call ends by its timeout in all, not per socket read: an upstream trickling its
answer cannot keep a call past the lease of its host slot, so PIPELINE_HOST_CONCURRENCY
holds however slowly the answers come."""

from __future__ import annotations

import json

import pytest

from app.runner import calls
from tests.fakes.upstream import Answer, FakeUpstream
from tests.support.pipelines import Customer, Worker, new_pipeline
from tests.support.settings import settings_env

TIMEOUT_S = 0.5
# One byte each 50 ms: every read is quick, the whole answer takes ~9 s, longer than the
# slot's lease (the timeout + calls.SLOT_LEASE_MARGIN_S).
BODY = json.dumps({"pad": "x" * 170}).encode()
TRICKLE_S = 0.05


# An answer that closes its connection (HTTP/1.0, or `Connection: close`) takes the socket
# with it: http.client's connection forgets it while the body is still being read.
@pytest.mark.parametrize("headers", [{}, {"Connection": "close"}], ids=["keep-alive", "close"])
def test_a_trickling_upstream_cannot_hold_a_call_past_its_slot(
    worker: Worker, headers: dict[str, str]
) -> None:
    assert len(BODY) * TRICKLE_S > TIMEOUT_S + calls.SLOT_LEASE_MARGIN_S + 2
    with FakeUpstream() as upstream, settings_env(PIPELINE_HOST_CONCURRENCY="1"):
        answer = Answer(200, raw=BODY, trickle_s=TRICKLE_S, headers=headers)
        upstream.script("/slow", lambda _c: answer)
        pipeline = new_pipeline(
            [
                {
                    "id": "a",
                    "type": "http",
                    "url": upstream.url("/slow"),
                    "timeout_s": TIMEOUT_S,
                    "retries": 0,
                }
            ]
        )
        user = Customer(quota=2)
        first = user.create(pipeline).json()["id"]
        second = user.create(pipeline).json()["id"]
        tasks = [user.wait(first, timeout=40), user.wait(second, timeout=40)]
        worker.wait_idle()

    assert upstream.max_in_flight == 1
    assert len(upstream.calls_to("/slow")) == 2
    for task in tasks:
        assert task["status"] == "failed", task
        assert "timed out (called once)" in task["error"]["message"], task


def test_a_short_deadline_is_kept_while_a_longer_one_is_watched() -> None:
    """One watchdog serves every call of the process: a call with a short timeout, started
    while another call's longer deadline is being waited for, still ends at its own."""
    import threading

    from urllib3.exceptions import HTTPError

    from app.outbound import deadline

    long_started = threading.Event()
    outcomes: dict[str, bool] = {}

    def long_call(url: str) -> None:
        with deadline.within(60) as watch:
            long_started.set()
            deadline.pool_manager().request("POST", url, json={}, timeout=60)
        outcomes["long"] = watch.expired

    with FakeUpstream() as upstream:
        upstream.script("/steady", lambda _c: Answer(200, {"ok": True}, delay_s=1.0))
        upstream.script("/slow", lambda _c: Answer(200, raw=BODY, trickle_s=TRICKLE_S))
        other = threading.Thread(target=long_call, args=(upstream.url("/steady"),))
        other.start()
        assert long_started.wait(5)
        with deadline.within(TIMEOUT_S) as watch:
            try:
                deadline.pool_manager().request("POST", upstream.url("/slow"), json={}, timeout=5)
                cut = False
            except HTTPError:
                cut = True
        other.join(10)

    assert watch.expired and cut
    assert outcomes == {"long": False}


def test_a_watch_stopped_before_it_expires_leaves_its_connection_alone() -> None:
    """The watchdog picks a due watch up, then expires it: a call that ended in between may
    already be reusing the keep-alive connection for its next call, which must not be cut."""
    import socket

    from app.outbound import deadline

    class Connection:
        def __init__(self, sock: socket.socket) -> None:
            self.sock = sock

    ours, theirs = socket.socketpair()
    try:
        watch = deadline.Watch(60)
        watch.attach(Connection(ours))  # type: ignore[arg-type]
        watch.stop()
        watch.expire()
        assert not watch.expired
        theirs.sendall(b"x")
        assert ours.recv(1) == b"x"  # still open both ways
        ours.sendall(b"y")
        assert theirs.recv(1) == b"y"

        cut = deadline.Watch(60)
        cut.attach(Connection(ours))  # type: ignore[arg-type]
        cut.expire()
        assert cut.expired and ours.recv(1) == b""  # a live watch does shut it
    finally:
        ours.close()
        theirs.close()
