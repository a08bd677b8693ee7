"""The acknowledged positions (`app.realtime.acks`) against real Redis: one per session,
and no more kept than a user can have sessions."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from app.config import get_settings
from app.identity import sessions
from app.realtime import acks, streams
from app.realtime.streams import StreamId
from app.redis_client import build_async_redis
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
