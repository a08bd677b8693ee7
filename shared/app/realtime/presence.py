"""Which users hold an open connection: `realtime:online:{<user>}`, a sorted set of the
user's connection ids, each scored with the time (ms) its entry lapses.

A connection enters when its handshake is accepted and enters again every `REFRESH_S`;
it leaves when it closes. One that dies without leaving (the instance frozen or killed)
lapses `TTL_S` after its last refresh: until then its user counts as connected, and a task
that ends in that window sends no subscription message (the update waits in the stream for
the next connection). The key expires `TTL_S` after the last refresh of any of them.
"""

from __future__ import annotations

import time
from typing import Any

from app.redis_client import get_redis, tag

TTL_S = 45
REFRESH_S = 15


def online_key(user_id: str) -> str:
    return f"realtime:online:{tag(user_id)}"


def _now_ms() -> int:
    return int(time.time() * 1000)


async def enter(client: Any, user_id: str, connection_id: str) -> None:
    key, now = online_key(user_id), _now_ms()
    pipe = client.pipeline(transaction=False)
    pipe.zadd(key, {connection_id: now + TTL_S * 1000})
    pipe.zremrangebyscore(key, "-inf", now)
    pipe.pexpire(key, TTL_S * 1000)
    await pipe.execute()


async def leave(client: Any, user_id: str, connection_id: str) -> None:
    await client.zrem(online_key(user_id), connection_id)


def connected(user_id: str) -> bool:
    """Whether the user holds a connection now (raises what Redis raises)."""
    return bool(get_redis().zcount(online_key(user_id), _now_ms(), "+inf"))
