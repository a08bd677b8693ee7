"""Audit trail tests: secrets sealed under a master key of their own, a clean Redis."""

from __future__ import annotations

import base64
import secrets
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.settings import settings_env


@pytest.fixture(autouse=True)
def _sealing(clean_redis: Any) -> Iterator[None]:
    key = base64.b64encode(secrets.token_bytes(32)).decode()
    with settings_env(CRYPTO_PROVIDER="local", LOCAL_MASTER_KEY=key):
        yield
