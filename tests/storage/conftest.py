"""Storage tests run the COS SDK's own code against FakeCos: a real HTTP server that checks
our signatures as COS does, in front of moto's S3 app. One fake serves the session; each
test gets it emptied, with its settings in the environment."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fakes.cos import FakeCos
from tests.support.settings import settings_env


@pytest.fixture(scope="session")
def cos_server() -> Iterator[FakeCos]:
    with FakeCos() as fake:
        yield fake


@pytest.fixture
def cos(cos_server: FakeCos) -> Iterator[FakeCos]:
    cos_server.reset()
    with settings_env(**cos_server.settings()):
        yield cos_server
