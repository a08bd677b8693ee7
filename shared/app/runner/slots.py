"""Upstream host slots: at most PIPELINE_HOST_CONCURRENCY calls to one `host:port` at once,
across every task and every function instance.

A slot is a member of a Redis sorted set per host, scored by when its lease ends. Taking
one is a Lua script (drop expired leases, count, add) so two instances never both take the
last slot; a worker that dies holding a slot frees it when the lease runs out. A caller
that gets no slot does not wait: it re-queues its work with a delay.

Every lease is set and judged by the clock of the Redis server holding the set (TIME, in
the scripts), never by an instance's own: instances whose clocks differ by seconds would
otherwise disagree on which leases have run out, and one whose clock runs ahead would drop
another's live slot, putting a call more on the host than its cap. TIME before a write is
allowed since scripts replicate their effects, not themselves (Redis 5 on).

Each operation touches one host's set alone, so on a Redis Cluster the key needs no hash
tag: the set lives in whichever slot its name hashes to, and the script runs there.

Owns: the slot sets and their Lua script. Never knows about tasks or rows: a slot is a
token and a lease, nothing more.
"""

from __future__ import annotations

import logging
import secrets

from app.observability import logging as applog
from app.redis_client import get_redis, is_redis_error

log = applog.get_logger(__name__)

# Part of the deployed state, whatever the module is called: instances of two releases,
# side by side during a deploy, must count the same slots or a host gets twice its cap.
KEY_PREFIX = "pipeline:slots:"

_ACQUIRE = """
local t = redis.call('TIME'); local now = t[1] * 1000 + math.floor(t[2] / 1000)  -- ms
local key, token = KEYS[1], ARGV[1]
local lease_ms, cap = tonumber(ARGV[2]), tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
if redis.call('ZCARD', key) < cap then
  redis.call('ZADD', key, now + lease_ms, token)
  redis.call('PEXPIRE', key, 3600000)  -- an idle host's set goes away; leases are shorter
  return 1
end
return 0
"""

# Only a slot still in the set: one dropped once its lease ran out is not taken back.
# Asked with ZSCORE, not read from ZADD's count: a renewal landing on the lease's own end
# changes nothing and would read as a lost slot.
_RENEW = """
local t = redis.call('TIME'); local now = t[1] * 1000 + math.floor(t[2] / 1000)  -- ms
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
  return 1
end
return 0
"""

_IN_USE = """
local t = redis.call('TIME'); local now = t[1] * 1000 + math.floor(t[2] / 1000)  -- ms
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
return redis.call('ZCARD', KEYS[1])
"""


def acquire(host_key: str, cap: int, lease_s: float) -> str | None:
    """A slot token for `host_key`, or None when all `cap` slots are taken."""
    token = secrets.token_hex(8)
    taken = get_redis().eval(_ACQUIRE, 1, KEY_PREFIX + host_key, token, _ms(lease_s), cap)
    return token if int(taken) == 1 else None


def renew(host_key: str, token: str, lease_s: float) -> bool:
    """Extend a held slot's lease to `lease_s` from now, for another call of its holder.
    False when the slot is no longer held (its lease ran out and another caller dropped
    it): the caller takes a fresh one. A slot still in the set is still counted, so
    renewing it never goes over the cap."""
    renewed = get_redis().eval(_RENEW, 1, KEY_PREFIX + host_key, token, _ms(lease_s))
    return int(renewed) == 1


def release(host_key: str, token: str) -> None:
    """Give the slot back. Best effort: one that Redis cannot take back now (it went away
    during the call) is freed when its lease runs out, as a dead holder's is, so the host
    is never over its cap, and what its holder does next (settling the answer its call got)
    goes on."""
    try:
        get_redis().zrem(KEY_PREFIX + host_key, token)
    except Exception as error:
        if not is_redis_error(error):
            raise
        log_unavailable("host slot not given back", host_key, error)


def log_unavailable(message: str, host_key: str, error: Exception) -> None:
    """A WARNING that Redis could not do what `message` says for `host_key`'s slots."""
    why = type(error).__name__  # the class only: a client error's text names the server
    applog.log_fields(log, logging.WARNING, message, host=host_key, error=why)


def in_use(host_key: str) -> int:
    return int(get_redis().eval(_IN_USE, 1, KEY_PREFIX + host_key))


def _ms(seconds: float) -> int:
    return round(seconds * 1000)
