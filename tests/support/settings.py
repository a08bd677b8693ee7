"""Run a block under other settings: environment variables changed, the settings cache (and
the caches built from settings) cleared on the way in and on the way out."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager


def _clear_caches() -> None:
    from app.config import get_settings

    get_settings.cache_clear()


@contextmanager
def settings_env(**env: str | None) -> Iterator[None]:
    """`settings_env(DB_POOL_MAX="1")`: a value of None removes the variable."""
    saved = {key: os.environ.get(key) for key in env}
    try:
        for key, value in env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        _clear_caches()
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        _clear_caches()
