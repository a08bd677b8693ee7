"""Upstream host slots: at most PIPELINE_HOST_CONCURRENCY calls to one `host:port` at once,
across every task and every function instance.

A slot is a member of a Redis sorted set per host, scored by when its lease ends. Taking
one is a Lua script (drop expired leases, count, add) so two instances never both take the
last slot; a worker that dies holding a slot frees it when the lease runs out. A caller
that gets no slot does not wait: it re-queues its work with a delay.

Each operation touches one host's set alone, so on a Redis Cluster the key needs no hash
tag: the set lives in whichever slot its name hashes to, and the script runs there.

Owns: the slot sets and their Lua script. Never knows about tasks or rows: a slot is a
token and a lease, nothing more.
"""

from __future__ import annotations

import logging
import secrets
import time

from app.observability import logging as applog
from app.redis_client import get_redis, is_redis_error

log = applog.get_logger(__name__)

# Part of the deployed state, whatever the module is called: instances of two releases,
# side by side during a deploy, must count the same slots or a host gets twice its cap.
KEY_PREFIX = "pipeline:slots:"

_ACQUIRE = """
local key, token = KEYS[1], ARGV[1]
local now, lease_until, cap = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
if redis.call('ZCARD', key) < cap then
  redis.call('ZADD', key, lease_until, token)
  redis.call('PEXPIRE', key, 3600000)  -- an idle host's set goes away; leases are shorter
  return 1
end
return 0
"""


def acquire(host_key: str, cap: int, lease_s: float) -> str | None:
    """A slot token for `host_key`, or None when all `cap` slots are taken."""
    token = secrets.token_hex(8)
    now_ms = time.time() * 1000
    # Registered on the client of this call: a script object keeps the client it was
    # registered on, and the instance's client is rebuilt when its settings change.
    taken = get_redis().register_script(_ACQUIRE)(
        keys=[KEY_PREFIX + host_key], args=[token, now_ms, now_ms + lease_s * 1000, cap]
    )
    return token if int(taken) == 1 else None


def renew(host_key: str, token: str, lease_s: float) -> bool:
    """Extend a held slot's lease to `lease_s` from now, for another call of its holder.
    False when the slot is no longer held (its lease ran out and another caller dropped
    it): the caller takes a fresh one. A slot still in the set is still counted, so
    renewing it never goes over the cap."""
    until_ms = (time.time() + lease_s) * 1000
    return bool(get_redis().zadd(KEY_PREFIX + host_key, {token: until_ms}, xx=True, ch=True))


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
        why = type(error).__name__  # the class only: a client error's text names the server
        applog.log_fields(
            log, logging.WARNING, "host slot not given back", host=host_key, error=why
        )


def in_use(host_key: str) -> int:
    key = KEY_PREFIX + host_key
    redis = get_redis()
    redis.zremrangebyscore(key, "-inf", time.time() * 1000)
    return int(redis.zcard(key))
