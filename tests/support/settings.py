"""Run a block under other settings: environment variables changed, the settings cache
cleared on the way in and on the way out."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager


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
