from __future__ import annotations

import base64
import secrets
from collections.abc import Iterator

import pytest

from tests.fakes.kms import FakeKms
from tests.fakes.tencentcloud import FakeTencentCloud
from tests.support.pipelines import (  # noqa: F401 - fixtures
    _drain_parked_messages,
    _ledger_invariant,
    worker,
)
from tests.support.settings import settings_env


@pytest.fixture(autouse=True)
def master_key() -> Iterator[str]:
    """What these tests seal is sealed under a local master key of their own."""
    key = base64.b64encode(secrets.token_bytes(32)).decode()
    with settings_env(CRYPTO_PROVIDER="local", LOCAL_MASTER_KEY=key):
        yield key


@pytest.fixture
def kms() -> Iterator[FakeKms]:
    with FakeTencentCloud() as cloud:
        yield FakeKms(cloud)
