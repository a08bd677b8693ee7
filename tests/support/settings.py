"""Run a block under other settings: environment variables changed, the settings cache
cleared on the way in and on the way out; and the instance's engine or Redis client rebuilt
under them (`app_engine_under`, `redis_at`, `redis_down`)."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any


def _apply(env: Mapping[str, str | None]) -> None:
    """Set each variable; None removes it. Then drop the cached settings object."""
    from app.config import get_settings

    for key, value in env.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    get_settings.cache_clear()


@contextmanager
def settings_env(**env: str | None) -> Iterator[None]:
    """`settings_env(DB_POOL_MAX="1")`: a value of None removes the variable."""
    saved = {key: os.environ.get(key) for key in env}
    try:
        _apply(env)
        yield
    finally:
        _apply(saved)


@contextmanager
def app_engine_under(**env: str) -> Iterator[Any]:
    """The instance's engine (the one `transaction()` uses) built under these settings,
    disposed after; the usual one is rebuilt on next use."""
    from app.db.engine import get_engine

    get_engine().dispose()
    with settings_env(**env):
        get_engine.cache_clear()
        try:
            yield get_engine()
        finally:
            get_engine().dispose()
            get_engine.cache_clear()


@contextmanager
def redis_at(url: str) -> Iterator[None]:
    """The instance's Redis client rebuilt for REDIS_URL=`url`, closed after; the usual one
    is rebuilt on next use."""
    from app.redis_client import get_redis

    with settings_env(REDIS_URL=url):
        get_redis.cache_clear()
        try:
            yield
        finally:
            if get_redis.cache_info().currsize:
                get_redis().close()
            get_redis.cache_clear()


@contextmanager
def redis_down() -> Iterator[None]:
    """The instance's Redis client pointed at a port nobody listens on."""
    from tests.support.net import closed_port

    with redis_at(f"redis://127.0.0.1:{closed_port()}/0"):
        yield
