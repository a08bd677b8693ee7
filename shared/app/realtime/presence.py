"""Which users hold an open connection: `realtime:online:{<user>}`, a sorted set of the
user's connection ids, each scored with the time (ms) its entry lapses.

A connection is admitted at its handshake and enters again every `REFRESH_S`; it leaves
when it closes. One that dies without leaving (the instance frozen or killed) lapses
`TTL_S` after its last refresh: until then its user counts as connected, and a task that
ends in that window sends no subscription message (the update waits in the stream for the
next connection). The key expires `TTL_S` after the last refresh of any of them.

A user holds at most MAX_PER_USER connections at once (a lapsed one no longer counts): each
is an SCF instance held for the connection's whole life, and the account's concurrency is
shared by every function, so one user's connections must not take it all.
"""

from __future__ import annotations

import time
from typing import Any

from app.redis_client import get_redis, tag

TTL_S = 45
REFRESH_S = 15
# A phone, a tablet and a computer, and room for two connections whose drop the server
# has not noticed yet (a client that lost its network reconnects at once).
MAX_PER_USER = 5

# KEYS[1] the user's connections; ARGV[1] the connection, ARGV[2] now (ms), ARGV[3] TTL_S in
# ms, ARGV[4] MAX_PER_USER. 1: the connection is counted; 0: the user holds the most already.
_ADMIT = """
local now = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if not redis.call('ZSCORE', KEYS[1], ARGV[1])
    and redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[4]) then
  return 0
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
"""


def online_key(user_id: str) -> str:
    return f"realtime:online:{tag(user_id)}"


def _now_ms() -> int:
    return int(time.time() * 1000)


async def admit(client: Any, user_id: str, connection_id: str) -> bool:
    """Count the connection as the user's, unless the user holds MAX_PER_USER already
    (False: it is not counted). Atomic, so handshakes at once cannot pass the limit
    together."""
    admitted = await client.eval(
        _ADMIT, 1, online_key(user_id), connection_id, _now_ms(), TTL_S * 1000, MAX_PER_USER
    )
    return bool(int(admitted))


async def enter(client: Any, user_id: str, connection_id: str) -> None:
    """Refresh an admitted connection's entry."""
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
