"""The cache: cache-aside of JSON values in Redis, the one way services cache what they read.

    from app import cache

    profile = cache.get_or_set(f"user:{user_id}", load_profile, 3600)    # None is cached too
    cache.invalidate(f"user:{user_id}")                                  # after the commit
    cache.invalidate_pattern("plans:*")                                  # glob over keys

- `get_or_set(key, loader, ttl_s, *, negative_ttl_s=60)`: the cached value of `key`, or
  `loader()`'s, stored for `ttl_s` seconds. A loader that returns None (a miss in the
  database) is remembered as a miss for `negative_ttl_s` seconds (0: not remembered). Values
  go through JSON both ways, so a hit and a miss return the same thing (tuples come back as
  lists, dict keys as strings); a value JSON cannot encode is a TypeError. An exception
  from the loader reaches the caller and nothing is stored.
- `hold(key)` inside a change's transaction, then `release(key, hold)` after its commit:
  for a change that a stale value must never hide (who may do what); see `Cache.hold`.
- `invalidate(*keys)` and `invalidate_pattern(pattern)` drop values (`pattern` is a Redis
  glob over the same keys, matched with SCAN in batches and removed with UNLINK; never
  KEYS). Both return how many values were dropped. Call them after the change commits.
- `Cache(redis=None, *, lock_ttl_s=10, wait_s=2, poll_s=0.01, scan_batch=500)` is the same
  service over a given client with its own timings; the module functions use one default
  instance over this instance's client (`app.redis_client.get_redis()`, read per call).

Keys are stored under `cache:<key>`; `redis_key(key)` gives the stored name. A key holds no
braces (a ValueError), so Redis hashes that name whole, and the lock of its loads,
`cache-lock:{cache:<key>}` (`lock_key(key)`), carries it as its hash tag, as does a change's
hold on it, `cache-hold:{cache:<key>}` (`hold_key(key)`): the three share a Redis Cluster
slot, as the script that stores under the lock needs, and the value keeps the name earlier
releases read and invalidate.

Stampede protection: on a miss, one caller per key (across processes) takes a short lock
(`SET cache-lock:{cache:<key>} <token> NX PX`) and runs the loader; the others poll for its value
for up to `wait_s`, then run the loader themselves rather than fail, without storing what
they loaded. Only the lock holder stores, and only while the lock is still its own, so an
invalidation (which also drops the lock) cannot be overwritten by a load that started
before the change: that load's result goes to its caller and nowhere else.

Invalidation drops each key's lock, then its value, one key per command (a lock and its
value share a slot, two keys need not), so it runs alike on one Redis and on a cluster. A
pattern is matched with SCAN, which on a cluster visits every primary in turn (redis-py's
`scan_iter`): the cost grows with all the keys of the cluster, not with the matches, so a
pattern is for rare, broad drops and a known key is dropped by name.

A Redis outage (refused connection, timeout, any Redis error, a cluster that cannot be
reached) never reaches the caller: the call logs a warning, stops talking to Redis, and
returns what the loader returns.
"""

from __future__ import annotations

import itertools
import json
import logging
import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from app.observability import logging as applog
from app.redis_client import get_redis, is_redis_error, tag

T = TypeVar("T")
log = applog.get_logger("app.cache")

PREFIX = "cache:"
LOCK_PREFIX = "cache-lock:"
HOLD_PREFIX = "cache-hold:"
NEGATIVE_TTL_S = 60.0
# Stored for a remembered miss. Every other stored value is JSON text, which never starts
# with "!", so the two cannot be confused.
_MISS = "!miss"

# KEYS[1] value key, KEYS[2] lock key, KEYS[3] hold key; ARGV token, value, ttl in ms.
# Nothing is stored while a change holds the key: what was loaded may predate its commit.
_STORE_IF_LOCKED = """
if redis.call('get', KEYS[2]) ~= ARGV[1] then
  return 0
end
redis.call('del', KEYS[2])
if redis.call('exists', KEYS[3]) == 1 then
  return 0
end
redis.call('set', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1
"""
# KEYS[1] lock key, KEYS[2] value key, KEYS[3] hold key; ARGV[1] the change's hold.
# One step: a hold ended in a later round trip than the lock's drop would end, when the
# drop failed, with a load that read before the change still able to store.
_RELEASE_HOLD = """
redis.call('del', KEYS[1], KEYS[2])
if redis.call('get', KEYS[3]) == ARGV[1] then
  redis.call('del', KEYS[3])
end
return 1
"""
# KEYS[1] lock key; ARGV[1] token.
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('del', KEYS[1])
end
return 0
"""


def redis_key(key: str) -> str:
    """The Redis key a cached value of `key` is stored under."""
    return PREFIX + key


def lock_key(key: str) -> str:
    """The Redis key of the lock on loads of `key`: in its value's slot."""
    return LOCK_PREFIX + tag(redis_key(key))


def hold_key(key: str) -> str:
    """The Redis key of a change's hold on `key` (`Cache.hold`): in its value's slot."""
    return HOLD_PREFIX + tag(redis_key(key))


class _Outage(Exception):
    """Redis failed during this call; the call carries on without it."""


class Cache:
    def __init__(
        self,
        redis: Any = None,
        *,
        lock_ttl_s: float = 10.0,
        wait_s: float = 2.0,
        poll_s: float = 0.01,
        scan_batch: int = 500,
    ) -> None:
        self._redis = redis
        self.lock_ttl_ms = max(1, int(lock_ttl_s * 1000))
        self.wait_s = wait_s
        self.poll_s = poll_s
        self.scan_batch = scan_batch

    @property
    def redis(self) -> Any:
        if self._redis is None:
            return get_redis()
        return self._redis

    # -- reads --------------------------------------------------------------------------

    def get_or_set(
        self,
        key: str,
        loader: Callable[[], T | None],
        ttl_s: float,
        *,
        negative_ttl_s: float = NEGATIVE_TTL_S,
    ) -> T | None:
        if ttl_s <= 0:
            raise ValueError("ttl_s must be positive")
        lock = lock_key(key)
        token = secrets.token_hex(8)
        try:
            redis = self._redis_call(key, "connect", lambda: self.redis)
            found, value = self._read(redis, key)
            if found:
                return cast("T | None", value)
            deadline = time.monotonic() + self.wait_s
            pause = self.poll_s
            while True:
                if self._redis_call(
                    key, "lock", redis.set, lock, token, nx=True, px=self.lock_ttl_ms
                ):
                    # The holder before us may have stored the value since we last looked.
                    found, value = self._read(redis, key)
                    if found:
                        self._release(redis, key, lock, token)
                        return cast("T | None", value)
                    return self._load_and_store(
                        redis, key, loader, ttl_s, negative_ttl_s, lock, token
                    )
                if time.monotonic() >= deadline:
                    break
                time.sleep(pause)
                pause = min(pause * 1.5, 0.1)
                found, value = self._read(redis, key)
                if found:
                    return cast("T | None", value)
        except _Outage:
            pass
        # Waited long enough, or Redis is down: load without storing.
        return _round_trip(loader())

    def _read(self, redis: Any, key: str) -> tuple[bool, Any]:
        found = stored(key, self._redis_call(key, "get", redis.get, redis_key(key)))
        return (False, None) if found is None else (True, found.value)

    def _load_and_store(
        self,
        redis: Any,
        key: str,
        loader: Callable[[], T | None],
        ttl_s: float,
        negative_ttl_s: float,
        lock: str,
        token: str,
    ) -> T | None:
        try:
            value = loader()
            if value is None:
                encoded, ttl = _MISS, negative_ttl_s
            else:
                encoded, ttl = _encode(value), ttl_s
        except BaseException:
            self._release(redis, key, lock, token)
            raise
        with self._tolerated(key, "store"):
            if ttl > 0:
                keys = [redis_key(key), lock, hold_key(key)]
                redis.eval(_STORE_IF_LOCKED, len(keys), *keys, token, encoded, int(ttl * 1000))
            else:
                self._release(redis, key, lock, token)
        return None if value is None else json.loads(encoded)

    def _release(self, redis: Any, key: str, lock: str, token: str) -> None:
        # A lock left behind expires by itself; waiters then load on their own.
        with self._tolerated(key, "unlock"):
            redis.eval(_RELEASE, 1, lock, token)

    # -- changes that a stale value must not undo -----------------------------------------

    def hold(self, key: str) -> str:
        """Call inside the transaction of a change, just before it commits, and
        `release(key, <what this returns>)` after the commit (`tx.after_commit`).

        Sets the change's hold on `key` and drops the value, in one round trip. While the
        hold stands, loads of `key` read the database and store nothing, a load that began
        before the hold included. The hold is a key of its own, not the lock on loads, so
        that another change's `invalidate` of the key meanwhile (a user's quota moving while
        their role changes) cannot end it. So no value read before the commit is stored
        after it, even when the release after the commit never reaches Redis: the hold then
        runs out (`lock_ttl_s`) on an empty key. A Redis failure is raised, so that the
        transaction rolls back and the change is refused rather than left for a stale value
        to hide."""
        token = "held:" + secrets.token_hex(8)
        pipe = self.redis.pipeline(transaction=False)
        pipe.set(hold_key(key), token, px=self.lock_ttl_ms)
        pipe.unlink(redis_key(key))
        pipe.execute()
        return token

    def release(self, key: str, hold: str) -> None:
        """After the held change's commit: drop the value and any load in flight (each of
        which read after the commit only once this is done) and, in the same script, the
        change's hold, if still its own. A release that fails leaves all three: the hold
        runs out on an empty key."""
        keys = [lock_key(key), redis_key(key), hold_key(key)]
        with self._tolerated(key, "release", level=logging.ERROR):
            self.redis.eval(_RELEASE_HOLD, len(keys), *keys, hold)

    # -- invalidation -----------------------------------------------------------------

    def invalidate(self, *keys: str) -> int:
        """Drop the values of these keys (and any load of them in flight)."""
        if not keys:
            return 0
        dropped = 0
        with self._tolerated(",".join(keys), "invalidate", level=logging.ERROR):
            # Each lock before its value: a load in flight can then no longer store what it
            # read before the change, even between the two commands.
            names = [name for k in keys for name in (lock_key(k), redis_key(k))]
            dropped = sum(_unlink_each(self.redis, names)[1::2])
        return dropped

    def invalidate_pattern(self, pattern: str) -> int:
        """Drop every value whose key matches the glob `pattern` (and loads in flight)."""
        dropped = 0
        with self._tolerated(pattern, "invalidate_pattern", level=logging.ERROR):
            redis = self.redis
            # Locks first, as in invalidate.
            for match in (LOCK_PREFIX + tag(PREFIX + pattern), PREFIX + pattern):
                found = redis.scan_iter(match=match, count=self.scan_batch)
                while batch := list(itertools.islice(found, self.scan_batch)):
                    removed = sum(_unlink_each(redis, batch))
                    if match.startswith(PREFIX):
                        dropped += removed
        return dropped

    # -- Redis failures ---------------------------------------------------------------

    def _redis_call(
        self, key: str, op: str, fn: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> Any:
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            if not is_redis_error(exc):
                raise
            self._warn(key, op, exc)
            raise _Outage from exc

    @contextmanager
    def _tolerated(self, key: str, op: str, level: int = logging.WARNING) -> Iterator[None]:
        """A Redis failure inside the block is logged and the block abandoned, never raised."""
        try:
            yield
        except Exception as exc:
            if not is_redis_error(exc):
                raise
            self._warn(key, op, exc, level)

    @staticmethod
    def _warn(key: str, op: str, exc: Exception, level: int = logging.WARNING) -> None:
        applog.log_fields(log, level, "cache unavailable", key=key, op=op, error=type(exc).__name__)


@dataclass(frozen=True)
class Found:
    """A cached value (None: a remembered miss)."""

    value: Any


def stored(key: str, raw: str | None) -> Found | None:
    """What a GET of `redis_key(key)` returned, read as the cache stores it: None when
    nothing usable is cached. For a caller that reads the value in a pipeline of its own."""
    if raw is None:
        return None
    if raw == _MISS:
        return Found(None)
    try:
        return Found(json.loads(raw))
    except ValueError:
        applog.log_fields(log, logging.WARNING, "cache value unreadable", key=key)
        return None


def _unlink_each(redis: Any, names: list[str]) -> list[int]:
    """UNLINK each name in turn, one key per command (so any two may be in different
    cluster slots), in one round trip to each node; how many existed, name by name."""
    pipe = redis.pipeline(transaction=False)
    for name in names:
        pipe.unlink(name)
    return [int(n) for n in pipe.execute()]


def _encode(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _round_trip(value: T | None) -> T | None:
    return None if value is None else json.loads(_encode(value))


_default = Cache()


def get_or_set(
    key: str,
    loader: Callable[[], T | None],
    ttl_s: float,
    *,
    negative_ttl_s: float = NEGATIVE_TTL_S,
) -> T | None:
    """The cached value of `key`, else `loader()`'s, stored for `ttl_s` seconds."""
    return _default.get_or_set(key, loader, ttl_s, negative_ttl_s=negative_ttl_s)


def invalidate(*keys: str) -> int:
    """Drop the cached values of `keys`. Returns how many there were."""
    return _default.invalidate(*keys)


def hold(key: str) -> str:
    """Keep a value read before a change from being stored after it (`Cache.hold`); the
    hold to give `release` after the commit."""
    return _default.hold(key)


def release(key: str, hold: str) -> None:
    """After the commit of a change that held `key`: drop its value, any load in flight
    and the hold, in one step (`Cache.release`)."""
    _default.release(key, hold)


def invalidate_pattern(pattern: str) -> int:
    """Drop the cached values whose keys match the glob `pattern`. Returns how many."""
    return _default.invalidate_pattern(pattern)
