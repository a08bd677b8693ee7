"""Test run set-up: a database of its own on the real MariaDB, a Redis database of its
own, a COS bucket of its own (FakeCos), migrations applied once. Environment first, before
anything imports app.config."""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import Iterator
from typing import Any

import pytest

_RUN = secrets.token_hex(4)
SERVER_URL = os.environ.get("TEST_DATABASE_URL", "mysql+pymysql://root@127.0.0.1:3306")
TEST_DB = f"test_app_{_RUN}"
TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")

os.environ.update(
    {
        "APP_ENV": "test",
        "DATABASE_URL": f"{SERVER_URL.rstrip('/')}/{TEST_DB}",
        "REDIS_URL": TEST_REDIS_URL,
        "JWT_SECRET": secrets.token_urlsafe(64),
        "DB_POOL_MIN": "0",
        "DB_POOL_MAX": "20",
        "DB_POOL_ACQUIRE_TIMEOUT_S": "10",
        "LOG_LEVEL": "INFO",
    }
)


@pytest.fixture(scope="session")
def leak_guard() -> Iterator[Any]:
    """The run's log guard (tests.support.log_guard), on the root logger configured as the
    first function entry configures it, so it sees the levels production writes."""
    from app.config import get_settings
    from app.observability.logging import configure
    from tests.support.log_guard import LeakGuard

    configure(get_settings().log_level)
    guard = LeakGuard()
    logging.getLogger().addHandler(guard)
    yield guard
    logging.getLogger().removeHandler(guard)


@pytest.fixture(autouse=True)
def no_leak_in_logs(leak_guard: Any) -> Iterator[None]:
    """Fails the test during which a log line held a secret, a hash or a stack trace."""
    root = logging.getLogger()
    if leak_guard not in root.handlers:  # a test that set the root's handlers anew
        root.addHandler(leak_guard)
    yield
    found = leak_guard.take()
    if found:
        pytest.fail("a log line holds what no log line may:\n" + "\n".join(found), pytrace=False)


@pytest.fixture(scope="session", autouse=True)
def database() -> Iterator[str]:
    from tests.support.database import migrated_database

    with migrated_database(SERVER_URL, TEST_DB) as url:
        yield url


@pytest.fixture(scope="session", autouse=True)
def redis_db() -> Iterator[Any]:
    from app.redis_client import get_redis

    client = get_redis()
    client.flushdb()
    yield client
    client.flushdb()


@pytest.fixture(scope="session", autouse=True)
def cos_bucket() -> Iterator[Any]:
    """The run's COS bucket (FakeCos: COS's API checking signatures, moto behind it), in the
    environment like the database: any test's large output or upload lands there."""
    from app.config import get_settings
    from tests.fakes.cos import FakeCos

    with FakeCos() as fake:
        os.environ.update(fake.settings())
        get_settings.cache_clear()
        yield fake


@pytest.fixture
def clean_redis(redis_db: Any) -> Any:
    redis_db.flushdb()
    return redis_db


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[Any]:
    """A real three-node Redis Cluster, started once for the run (tests.support.redis_cluster)."""
    from tests.support.redis_cluster import running_cluster

    with running_cluster() as cluster:
        yield cluster


@pytest.fixture
def on_cluster(redis_cluster: Any) -> Iterator[Any]:
    """The instance's Redis client (`get_redis()`) on the cluster, emptied first."""
    from tests.support.settings import redis_at

    redis_cluster.flush()
    with redis_at(redis_cluster.url):
        yield redis_cluster
