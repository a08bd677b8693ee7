"""The acknowledged positions (`app.realtime.acks`) against real Redis: one per session,
no more kept than a user can have sessions, and a connection's acks bounded by their
allowance with none lost."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import pytest

from app.config import get_settings
from app.identity import sessions
from app.realtime import acks, streams
from app.realtime.streams import StreamId
from app.redis_client import build_async_redis
from tests.realtime.conftest import Client, User, open_client
from tests.support.local_cloud import wait_for
from tests.support.quota import new_user

pytestmark = pytest.mark.usefixtures("fresh_redis")


def _sign_in(user_id: str) -> str:
    return sessions.start(user_id, role="user", phone=None).sid


def test_signing_in_over_and_over_keeps_no_more_positions_than_live_sessions(
    fresh_redis: Any,
) -> None:
    user_id = new_user(0)
    newest = StreamId.parse(streams.append(user_id, {"id": "t", "status": "running"}, 1) or "")
    assert newest is not None
    signed_in = [_sign_in(user_id) for _ in range(sessions.MAX_SESSIONS + 20)]

    async def acknowledge_on_each() -> list[StreamId | None]:
        client = build_async_redis(get_settings().redis_url)
        try:
            for sid in signed_in:
                assert await acks.advance(client, user_id, sid, newest)
            return [await acks.position(client, user_id, sid) for sid in live]
        finally:
            await client.aclose()

    live = sorted(fresh_redis.smembers(sessions.set_key(user_id)))
    assert len(live) == sessions.MAX_SESSIONS  # the sign-ins past it ended the others
    assert asyncio.run(acknowledge_on_each()) == [newest] * len(live)
    held = fresh_redis.hkeys(acks.acks_key(user_id))
    assert set(held) <= set(live) and len(held) <= sessions.MAX_SESSIONS
    assert 0 < fresh_redis.pttl(acks.acks_key(user_id)) <= streams.KEEP_MS


_SCRIPT_CALLS = ("eval", "evalsha")


def _scripts_run(redis: Any) -> int:
    stats = redis.info("commandstats")
    return sum(int(stats.get(f"cmdstat_{name}", {}).get("calls", 0)) for name in _SCRIPT_CALLS)


@dataclass(frozen=True)
class _Connected:
    """A user's open connection, which has received the two updates of one ended task."""

    user: User
    client: Client
    running: str  # the first update's message id
    ended: str  # the last one's

    @classmethod
    def open(cls, cloud: Any) -> _Connected:
        user = User.new()
        client = open_client(cloud, user.token)
        running, ended = client.until_ended(user.create(cloud))
        return cls(user, client, running["id"], ended["id"])

    def position(self, redis: Any) -> list[str]:
        return list(redis.hvals(acks.acks_key(self.user.id)))


def test_a_flood_of_acks_costs_redis_its_allowance_and_ends_at_the_latest(
    cloud: Any, fresh_redis: Any
) -> None:
    one = _Connected.open(cloud)
    before = _scripts_run(fresh_redis)
    for _ in range(10 * acks.ACK_BURST):
        one.client.ack(one.running)
    one.client.ack(one.ended)
    assert one.client.ping() == {"type": "pong"}  # every ack has been read
    # The burst, and what the allowance gave back while the acks came; one a connection's
    # presence may have taken besides.
    assert _scripts_run(fresh_redis) - before <= acks.ACK_BURST + 3
    # The ack past the allowance is applied as it refills, the connection still open.
    assert wait_for(lambda: one.position(fresh_redis) == [one.ended], timeout=5)
    one.client.close()
    later = open_client(cloud, one.user.token)
    assert later.ping() == {"type": "pong"}
    assert later.received == [{"type": "pong"}]  # nothing to send again
    later.close()


def test_an_ack_held_past_the_allowance_is_applied_when_the_connection_ends(
    cloud: Any, fresh_redis: Any
) -> None:
    one = _Connected.open(cloud)
    for _ in range(acks.ACK_BURST):
        one.client.ack(one.running)
    assert one.client.ping() == {"type": "pong"}
    one.client.ack(one.ended)
    one.client.close()  # before the allowance has room for it
    assert wait_for(lambda: one.position(fresh_redis) == [one.ended], timeout=5)


def test_an_ack_of_a_message_not_sent_is_never_merged_with_the_held_one(
    cloud: Any, fresh_redis: Any
) -> None:
    """Past the allowance, an id past what the connection sent is dropped, not merged: the
    script would refuse the merged id, and the valid ack held with it would be lost."""
    one = _Connected.open(cloud)
    for _ in range(acks.ACK_BURST):
        one.client.ack(one.running)
    one.client.ack(one.ended)  # held
    ended = StreamId.parse(one.ended)
    assert ended is not None
    one.client.ack(f"{ended.ms + 60_000}-0")  # never sent
    assert one.client.ping() == {"type": "pong"}
    assert wait_for(lambda: one.position(fresh_redis) == [one.ended], timeout=5)
    one.client.close()
