"""One in-process local cloud per test module, serving serverless.yml plus the test-only
probes of tests/functions, against the test run's MariaDB database and Redis."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.local_cloud import local_cloud

MAX_ATTEMPTS = 4


@pytest.fixture(scope="module")
def early_message() -> str:
    """Published before any local cloud subscribes the probe to its queue."""
    from app.queue import publish

    message_id = "early-" + secrets.token_hex(4)
    publish("queue-probe", {"id": message_id})
    return message_id


@pytest.fixture(scope="module")
def cloud(redis_db: Any, early_message: str) -> Iterator[Any]:
    with local_cloud(queue_backoff_s=0.05, queue_max_attempts=MAX_ATTEMPTS) as running:
        yield running
