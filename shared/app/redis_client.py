"""The Redis client of this instance, from REDIS_URL.

`memory://` gives fakeredis (with Lua, through lupa) on one in-process server, shared by
every client of the process: the embedded default of the local cloud. fakeredis is a dev
dependency and production refuses `memory://`, so it is imported only on that path.
"""

from __future__ import annotations

import functools
import sys
from typing import Any

from app.config import get_settings

_fake_server: Any = None


def build_redis(url: str) -> Any:
    if url.startswith("memory://"):
        import fakeredis  # cold start: a dev-only package, for memory:// alone

        global _fake_server
        if _fake_server is None:
            _fake_server = fakeredis.FakeServer()
        return fakeredis.FakeRedis(server=_fake_server, decode_responses=True)
    import redis  # cold start: redis-py loads with the first client, not with the function

    return redis.Redis.from_url(
        url,
        decode_responses=True,
        socket_connect_timeout=2,
        socket_timeout=5,
        health_check_interval=30,
        max_connections=64,
    )


@functools.lru_cache(maxsize=1)
def get_redis() -> Any:
    return build_redis(get_settings().redis_url)


def is_redis_error(exc: BaseException) -> bool:
    """Any error of redis-py (or fakeredis, which raises the same). Checked through
    sys.modules: a process that has no client has not imported redis-py, and then no
    exception can be one of its."""
    errors = sys.modules.get("redis.exceptions")
    return errors is not None and isinstance(exc, errors.RedisError)


def is_unreachable(exc: BaseException) -> bool:
    """Redis refused, dropped or timed out: a dependency down, not a bug of ours."""
    errors = sys.modules.get("redis.exceptions")
    return errors is not None and isinstance(exc, (errors.ConnectionError, errors.TimeoutError))
