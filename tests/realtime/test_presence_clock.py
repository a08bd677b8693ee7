"""Presence is judged by one clock, Redis's, not each instance's own: the `ws` instance that
admits and refreshes a connection and the instance that asks whether its user is connected
(to send a WeChat message or not) or admits the user's next connection may have wall clocks
some seconds apart. One whose clock runs ahead would otherwise drop another's live entries
(the user looks away, and a subscription message goes out while it watches; a connection
more than MAX_PER_USER is admitted), and one whose clock runs behind would write entries
already lapsed for everyone else.

The other instance is this process with its wall clock off (`tests.support.clock`)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from app.config import get_settings
from app.realtime import presence
from app.redis_client import build_async_redis
from tests.support.clock import clock_off_by

# Past TTL_S, so even a connection admitted a moment ago would read as lapsed (or as long
# lapsed) to an instance this far off; a live entry has TTL_S - REFRESH_S (30 s) left at least.
SKEW_S = presence.TTL_S + 15.0

T = TypeVar("T")


def _on_redis(work: Callable[[Any], Awaitable[T]]) -> T:
    """`work` run with a `ws` instance's asyncio client, as a connection's handshake and
    refreshes are."""

    async def run() -> T:
        client = build_async_redis(get_settings().redis_url)
        try:
            return await work(client)
        finally:
            await client.aclose()

    return asyncio.run(run())


def _admit(user_id: str, connection_id: str) -> str:
    return _on_redis(lambda client: presence.admit(client, user_id, connection_id)).verdict


def _enter(user_id: str, connection_id: str) -> None:
    _on_redis(lambda client: presence.enter(client, user_id, connection_id))


def test_a_clock_ahead_leaves_another_instance_s_live_connections_alone() -> None:
    user_id = uuid.uuid4().hex
    held = [f"c{i}" for i in range(presence.MAX_PER_USER)]
    for connection_id in held:
        assert _admit(user_id, connection_id) == "ok"
    with clock_off_by(SKEW_S):
        assert presence.connected(user_id)  # no WeChat message while the user watches
        assert _admit(user_id, "one-more") == "held"
        _enter(user_id, held[0])
        assert presence.connected(user_id)
    assert _admit(user_id, "one-more") == "held"
    for connection_id in held:
        _on_redis(lambda client, c=connection_id: presence.leave(client, user_id, c))
    assert not presence.connected(user_id)


def test_a_connection_entered_by_a_clock_behind_counts_for_everyone() -> None:
    user_id = uuid.uuid4().hex
    with clock_off_by(-SKEW_S):
        assert _admit(user_id, "c0") == "ok"
    assert presence.connected(user_id)
    with clock_off_by(-SKEW_S):
        _enter(user_id, "c0")
    assert presence.connected(user_id)
    for i in range(1, presence.MAX_PER_USER):
        assert _admit(user_id, f"c{i}") == "ok"
    assert _admit(user_id, "one-more") == "held"  # c0 still counts
    with clock_off_by(-SKEW_S):
        assert _admit(user_id, "one-more") == "held"
