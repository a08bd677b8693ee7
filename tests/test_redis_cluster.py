"""The Redis client on a Redis Cluster: REDIS_URL's cluster schemes, the cluster the tests
start (tests/support/redis_cluster.py), hash tags, and the errors that mean "unreachable"."""

from __future__ import annotations

import shutil
from typing import Any

import pytest
from pydantic import ValidationError
from redis import exceptions

from app.config import Settings
from app.redis_client import get_redis, is_redis_error, is_unreachable, tag
from tests.support.apigw import call
from tests.support.functions import handler
from tests.support.redis_cluster import running_cluster


def test_the_cluster_has_three_primaries_serving_every_slot(redis_cluster: Any) -> None:
    for port in redis_cluster.ports:
        info = redis_cluster.info(port)
        assert info["cluster_state"] == "ok"
        assert int(info["cluster_slots_assigned"]) == 16384
        assert int(info["cluster_size"]) == 3


def test_without_redis_server_the_cluster_tests_skip(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(pytest.skip.Exception, match="redis-server"), running_cluster():
        pass


def test_a_cluster_url_gives_the_cluster_client(on_cluster: Any) -> None:
    client = get_redis()
    assert type(client).__name__ == "RedisCluster"
    for i in range(30):
        client.set(f"spread:{i}", i)
    assert all(on_cluster.node(port).dbsize() for port in on_cluster.ports)
    assert [int(client.get(f"spread:{i}")) for i in range(30)] == list(range(30))


def test_health_checks_the_cluster(on_cluster: Any) -> None:
    reply = call(handler("health"), "GET", "/health")
    assert reply.json()["checks"]["redis"] == "ok"


@pytest.mark.parametrize(
    "url", ["redis+cluster://10.0.0.5:6379", "redis+cluster://10.0.0.5/0", "rediss+cluster://h"]
)
def test_cluster_urls_are_accepted(url: str) -> None:
    assert Settings.from_environ({"REDIS_URL": url}).redis_url == url


def test_a_cluster_url_with_another_database_is_refused() -> None:
    with pytest.raises(ValidationError, match="database 0 only"):
        Settings.from_environ({"REDIS_URL": "redis+cluster://10.0.0.5:6379/2"})


def test_a_tag_is_the_entity_in_braces_and_nothing_else() -> None:
    assert tag("u1") == "{u1}"
    for bad in ("", "a{b", "a}b", "{u1}"):
        with pytest.raises(ValueError, match="hash tag"):
            tag(bad)


@pytest.mark.parametrize(
    ("error", "unreachable"),
    [
        (exceptions.ClusterDownError("CLUSTERDOWN The cluster is down"), True),
        (exceptions.MasterDownError("MASTERDOWN"), True),
        (exceptions.SlotNotCoveredError('Slot "7" is not covered by the cluster.'), True),
        (exceptions.ClusterError("TTL exhausted."), True),
        (exceptions.ConnectionError("refused"), True),
        (exceptions.RedisClusterException("EVAL - all keys must map to the same key slot"), False),
        (exceptions.ResponseError("CROSSSLOT Keys in request don't hash to the same slot"), False),
    ],
)
def test_cluster_errors_are_redis_errors_and_an_outage_is_unreachable(
    error: Exception, unreachable: bool
) -> None:
    assert is_redis_error(error)
    assert is_unreachable(error) is unreachable


def test_a_cluster_that_cannot_be_reached_while_the_client_is_built_is_unreachable() -> None:
    cause = exceptions.ConnectionError("Error 111 connecting to 127.0.0.1:7000.")
    try:
        raise exceptions.RedisClusterException("Redis Cluster cannot be connected.") from cause
    except exceptions.RedisClusterException as error:
        assert is_unreachable(error)
