"""Storage tests run the COS SDK's own code against FakeCos: a real HTTP server that checks
our signatures as COS does, in front of moto's S3 app. One fake serves the session; each
test gets it emptied, with its settings in the environment."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fakes.cos import FakeCos
from tests.support.pipelines import (  # noqa: F401 - fixtures
    _drain_parked_messages,
    _ledger_invariant,
    worker,
)
from tests.support.settings import settings_env


@pytest.fixture
def cos(cos_bucket: FakeCos) -> Iterator[FakeCos]:
    """The run's bucket (tests/conftest.py), emptied, with its settings in force."""
    cos_bucket.reset()
    with settings_env(**cos_bucket.settings()):
        yield cos_bucket
