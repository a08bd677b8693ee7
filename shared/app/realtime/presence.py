"""Which users hold an open connection: `realtime:online:{<user>}`, a sorted set of the
user's connection ids, each scored with the time (ms) its entry lapses.

A connection is admitted at its handshake and enters again every `REFRESH_S`; it leaves
when it closes. One that dies without leaving (the instance frozen or killed) lapses
`TTL_S` after its last refresh: until then its user counts as connected, and a task that
ends in that window sends no subscription message (the update waits in the stream for the
next connection). The key expires `TTL_S` after the last refresh of any of them.

Every entry is set and judged by the clock of the Redis server holding the set (TIME, in
the scripts), never by an instance's own, as the connect window is (its key's expiry): the
instance that admits a connection and the one that asks about its user may have clocks
seconds apart, and one running ahead by more than a live entry has left (at least
`TTL_S - REFRESH_S`) would drop another's live entries (the user looks away: a WeChat
message goes out while it watches, a connection past MAX_PER_USER is admitted), one
running behind would write entries lapsed for everyone else or keep lapsed ones counted
(a connect refused with 429 too early). TIME before a write is allowed since scripts
replicate their effects, not themselves (Redis 5 on).

A user holds at most MAX_PER_USER connections at once (a lapsed one no longer counts): each
is an SCF instance held for the connection's whole life, and the account's concurrency is
shared by every function, so one user's connections must not take it all. And a user opens
at most CONNECTS_PER_WINDOW connections in CONNECT_WINDOW_S (`realtime:connects:{<user>}`,
counted at admission): each connection first sends everything its device has not
acknowledged, up to 1 MiB read from Redis, so a client that reconnects in a loop without
acknowledging would otherwise read that again and again, as fast as it can reconnect.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from app import counters
from app.redis_client import get_redis, tag

TTL_S = 45
REFRESH_S = 15
# A phone, a tablet and a computer, and room for two connections whose drop the server
# has not noticed yet (a client that lost its network reconnects at once).
MAX_PER_USER = 5
# A connection ends every WS_MAX_CONNECTION_S (under 15 minutes) and whenever a device's
# network changes or the mini-program goes to the background: an average of one new
# connection every ten seconds, over ten minutes, is far past what devices do.
CONNECTS_PER_WINDOW = 60
CONNECT_WINDOW_S = 600

# KEYS[1] the user's connections, KEYS[2] their count in the window; ARGV[1] the connection,
# ARGV[2] TTL_S in ms, ARGV[3] MAX_PER_USER, ARGV[4] CONNECTS_PER_WINDOW, ARGV[5]
# CONNECT_WINDOW_S. {'ok', 0}: counted; {'held', 0}: the user holds the most already;
# {'often', ms}: the window's connections are spent, for ms more. A refusal counts nothing.
_ADMIT = """
local t = redis.call('TIME'); local now = t[1] * 1000 + math.floor(t[2] / 1000)  -- ms
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if not redis.call('ZSCORE', KEYS[1], ARGV[1])
    and redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then
  return {'held', 0}
end
if tonumber(redis.call('GET', KEYS[2]) or '0') >= tonumber(ARGV[4]) then
  return {'often', math.max(redis.call('PTTL', KEYS[2]), 1)}
end
if redis.call('INCR', KEYS[2]) == 1 then redis.call('EXPIRE', KEYS[2], tonumber(ARGV[5])) end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return {'ok', 0}
"""

# KEYS[1] the user's connections; ARGV[1] the connection, ARGV[2] TTL_S in ms.
_ENTER = """
local t = redis.call('TIME'); local now = t[1] * 1000 + math.floor(t[2] / 1000)  -- ms
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
"""

# KEYS[1] the user's connections: how many have not lapsed.
_CONNECTED = """
local t = redis.call('TIME'); local now = t[1] * 1000 + math.floor(t[2] / 1000)  -- ms
return redis.call('ZCOUNT', KEYS[1], now, '+inf')
"""


@dataclass(frozen=True)
class Admission:
    """What a handshake's admission found: `ok`, or why not (`held`: the user holds
    MAX_PER_USER connections; `often`: the window's connections are spent, for `wait_ms`
    more)."""

    verdict: str
    wait_ms: int = 0

    @property
    def admitted(self) -> bool:
        return self.verdict == "ok"

    @property
    def retry_after_s(self) -> int:
        return counters.wait_s(self.wait_ms)


def online_key(user_id: str) -> str:
    return f"realtime:online:{tag(user_id)}"


def connects_key(user_id: str) -> str:
    return f"realtime:connects:{tag(user_id)}"


async def admit(client: Any, user_id: str, connection_id: str) -> Admission:
    """Count the connection as the user's, unless the user holds MAX_PER_USER already or has
    opened CONNECTS_PER_WINDOW in the window (then nothing is counted). Atomic, so
    handshakes at once cannot pass either limit together."""
    verdict, wait_ms = await client.eval(
        _ADMIT,
        2,
        online_key(user_id),
        connects_key(user_id),
        connection_id,
        TTL_S * 1000,
        MAX_PER_USER,
        CONNECTS_PER_WINDOW,
        CONNECT_WINDOW_S,
    )
    return Admission(str(verdict), int(wait_ms))


async def enter(client: Any, user_id: str, connection_id: str) -> None:
    """Refresh an admitted connection's entry."""
    await client.eval(_ENTER, 1, online_key(user_id), connection_id, TTL_S * 1000)


async def leave(client: Any, user_id: str, connection_id: str) -> None:
    await client.zrem(online_key(user_id), connection_id)


def connected(user_id: str) -> bool:
    """Whether the user holds a connection now (raises what Redis raises)."""
    return bool(int(get_redis().eval(_CONNECTED, 1, online_key(user_id))))
