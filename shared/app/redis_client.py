"""The Redis client of this instance, from REDIS_URL.

- `redis://` and `rediss://` (TLS): one Redis server (redis-py's `Redis`).
- `redis+cluster://` and `rediss+cluster://`: a Redis Cluster (redis-py's `RedisCluster`),
  given the address of any of its nodes (or of the endpoint that leads to them); the client
  reads the slot map from it and sends each command to the node that owns its keys. A
  cluster has database 0 only, and refuses a script or a multi-key command whose keys are
  in different slots; `tag` names the part of a key that decides its slot. Every multi-key
  operation of this code keeps its keys in one slot (shared/app/README.md, "Redis keys"),
  so the same code runs on both.
- `memory://` gives fakeredis (with Lua, through lupa) on one in-process server, shared by
  every client of the process: the embedded default of the local cloud. fakeredis is a dev
  dependency and production refuses `memory://`, so it is imported only on that path.

Unlike `Redis`, `RedisCluster` connects while it is built (it reads the slot map), so with
the cluster down `get_redis()` itself raises; `is_unreachable` knows that error too.
"""

from __future__ import annotations

import functools
import sys
from typing import Any

from app.config import get_settings

_fake_server: Any = None
# A cluster URL's scheme, and the scheme redis-py reads for its nodes.
CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}
_OPTIONS: dict[str, Any] = {
    "decode_responses": True,
    "socket_connect_timeout": 2,
    "socket_timeout": 5,
    "health_check_interval": 30,
    "max_connections": 64,  # of a cluster: per node
}


def build_redis(url: str) -> Any:
    if url.startswith("memory://"):
        import fakeredis  # cold start: a dev-only package, for memory:// alone

        global _fake_server
        if _fake_server is None:
            _fake_server = fakeredis.FakeServer()
        return fakeredis.FakeRedis(server=_fake_server, decode_responses=True)
    scheme, _, address = url.partition("://")
    if scheme in CLUSTER_SCHEMES:
        from redis.cluster import RedisCluster  # cold start: as redis-py below

        return RedisCluster(url=f"{CLUSTER_SCHEMES[scheme]}://{address}", **_OPTIONS)
    import redis  # cold start: redis-py loads with the first client, not with the function

    return redis.Redis.from_url(url, **_OPTIONS)


def build_async_redis(url: str, **options: Any) -> Any:
    """An asyncio client for `url` (redis-py's `redis.asyncio`, fakeredis's for memory://,
    on the same in-process server as `build_redis`'s), for code that waits on Redis inside
    an event loop: the `ws` web function blocks on a stream while it serves its socket.
    `options` override the usual ones (a blocking read needs a longer socket timeout)."""
    settings = {**_OPTIONS, **options}
    if url.startswith("memory://"):
        import fakeredis  # cold start: a dev-only package, for memory:// alone
        from fakeredis import aioredis  # cold start: as above

        global _fake_server
        if _fake_server is None:
            _fake_server = fakeredis.FakeServer()
        return aioredis.FakeRedis(server=_fake_server, decode_responses=True)
    scheme, _, address = url.partition("://")
    if scheme in CLUSTER_SCHEMES:
        from redis.asyncio.cluster import RedisCluster  # cold start: asyncio clients only

        return RedisCluster.from_url(f"{CLUSTER_SCHEMES[scheme]}://{address}", **settings)
    from redis import asyncio as aioredis_client  # cold start: asyncio clients only

    return aioredis_client.Redis.from_url(url, **settings)


def tag(entity: str) -> str:
    """`{entity}`, the hash tag of a key name. Redis Cluster hashes only the text between a
    key's first `{` and the next `}`, so keys that carry the same tag share a slot and one
    script or command may touch them all (shared/app/README.md, "Redis keys"). An entity
    with a brace, or none at all, would not be that text: refused."""
    if not entity or "{" in entity or "}" in entity:
        raise ValueError(f"not a hash tag: {entity!r}")
    return "{" + entity + "}"


@functools.lru_cache(maxsize=1)
def get_redis() -> Any:
    return build_redis(get_settings().redis_url)


def is_redis_error(exc: BaseException) -> bool:
    """Any error of redis-py (or fakeredis, which raises the same), the cluster client's
    own included. Checked through sys.modules: a process that has no client has not
    imported redis-py, and then no exception can be one of its."""
    errors = sys.modules.get("redis.exceptions")
    return errors is not None and isinstance(exc, (errors.RedisError, errors.RedisClusterException))


def is_unreachable(exc: BaseException) -> bool:
    """Redis refused, dropped or timed out: a dependency down, not a bug of ours. On a
    cluster also: no node reachable while the client is built (its error wraps the last
    node's), a slot no node serves, the cluster down, redirections that never settle."""
    errors = sys.modules.get("redis.exceptions")
    if errors is None:
        return False
    if isinstance(exc, errors.RedisClusterException) and exc.__cause__ is not None:
        exc = exc.__cause__
    down = (errors.ConnectionError, errors.TimeoutError, errors.ClusterError)
    return isinstance(exc, (*down, errors.SlotNotCoveredError))
