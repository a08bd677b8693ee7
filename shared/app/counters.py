"""Counters over a window in Redis, taken before the action they limit: the sign-in rate
limits of `app.identity.sms` and `app.identity.throttle`, the orders a user makes
(`app.payments.orders`) and the uploads a user is given (`app.storage.uploads`). It sits
beside `redis_client`, below the domain and `storage` alike, so each of them takes its
limit here rather than through another's package.

A counter is one key, and each call touches one counter, so two counters of one limit may
live in different Redis Cluster slots (a phone's and an IP's). `take` checks and counts in
one script: parallel callers can never count past the limit, and a refused call counts
nothing. A counter's window starts at its first count (its TTL). `give_back` returns one
count, never below zero, and never recreates a counter that expired meanwhile (DECR would,
without a TTL); a counter it brings to zero is deleted, so that requests refused by
another limit (a phone's counters are taken before its address's) leave no key behind,
which with a fresh phone each time would otherwise fill Redis with empty counters for
their windows.

A refusal's wait is the window's rest rounded up to the second (`wait_s`): a client that
waits as long as Retry-After says is not refused again by the same window.

Such a window lets twice its limit through around its end (the limit just before it, the
limit again just after). A limit that must hold over every span of its length (a phone's
failed passwords, `app.identity.throttle`) takes `take_sliding` instead: a sorted set of
the counts' times, read by Redis's own clock (one clock for every instance), holding only
those inside the window and never more than the limit (a refused call adds nothing), the
key's TTL the newest count's. A refusal waits for the oldest count that keeps it full to
leave the window. Each count is a member the caller names, so `give_back_sliding` takes back
that count and no other one (a parallel caller's later count would leave the window later).
"""

from __future__ import annotations

import math

from app.errors import AppError, ErrorCode
from app.redis_client import get_redis

# The window of every "per hour" limit.
HOUR_S = 3600

# KEYS: counter. ARGV: limit, window s. Counts and says 0, or refuses with the PTTL (ms).
_TAKE = """
if tonumber(redis.call('GET', KEYS[1]) or '0') >= tonumber(ARGV[1]) then
  return math.max(redis.call('PTTL', KEYS[1]), 1)
end
if redis.call('INCR', KEYS[1]) == 1 then redis.call('EXPIRE', KEYS[1], tonumber(ARGV[2])) end
return 0
"""

# KEYS: counter.
_GIVE_BACK = """
if tonumber(redis.call('GET', KEYS[1]) or '0') > 0 and redis.call('DECR', KEYS[1]) == 0 then
  redis.call('DEL', KEYS[1])
end
return 1
"""

# KEYS: counts (a sorted set: a member per count, scored by its time in ms). ARGV: limit,
# window s, this count's member. Counts and says 0, or refuses with the ms until a count
# leaves the window. The set can hold more than the limit only after the limit was lowered:
# then as many must leave as it holds past the limit.
_TAKE_SLIDING = """
local t = redis.call('TIME'); local now = t[1] * 1000 + math.floor(t[2] / 1000)  -- ms
local window = tonumber(ARGV[2]) * 1000
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local over = redis.call('ZCARD', KEYS[1]) - tonumber(ARGV[1])
if over >= 0 then
  local freeing = redis.call('ZRANGE', KEYS[1], over, over, 'WITHSCORES')
  return math.max(tonumber(freeing[2]) + window - now, 1)
end
redis.call('ZADD', KEYS[1], now, ARGV[3])
redis.call('PEXPIRE', KEYS[1], window)
return 0
"""


def wait_s(pttl_ms: int) -> int:
    """Whole seconds until a window with `pttl_ms` left ends, rounded up: at least 1."""
    return max(math.ceil(pttl_ms / 1000), 1)


def take(key: str, limit: int, window_s: int) -> int:
    """Count one against `limit`: 0 when counted; when the counter is already at its limit,
    the seconds until its window ends (rounded up, at least 1), and nothing counted."""
    refused_ms = int(get_redis().eval(_TAKE, 1, key, limit, window_s))
    return wait_s(refused_ms) if refused_ms else 0


def give_back(key: str) -> None:
    get_redis().eval(_GIVE_BACK, 1, key)


def take_sliding(key: str, member: str, limit: int, window_s: int) -> int:
    """Count `member` against `limit` over the last `window_s`: 0 when counted; when `limit`
    counts are inside the window, the seconds until one leaves it (rounded up, at least 1),
    and nothing counted. `member` must be new to the key (a random token)."""
    refused_ms = int(get_redis().eval(_TAKE_SLIDING, 1, key, limit, window_s, member))
    return wait_s(refused_ms) if refused_ms else 0


def give_back_sliding(key: str, member: str) -> None:
    # The last member's removal deletes the key: nothing is left, or recreated, for it.
    get_redis().zrem(key, member)


def take_hourly(key: str, limit: int, code: ErrorCode, message: str) -> None:
    """Count one against `limit` in the hour's window, or raise `code` (a 429) with
    Retry-After, nothing counted: the shape of every per-hour limit a client meets."""
    wait = take(key, limit, HOUR_S)
    if wait:
        raise AppError(code, message, headers={"Retry-After": str(wait)})
