"""A dependency that is down is 503 SERVICE_UNAVAILABLE, never a 500."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from app.http import Auth, Request, Router, http_handler
from app.redis_client import get_redis
from tests.support.function_url import call
from tests.support.logs import capture_logs
from tests.support.net import closed_port
from tests.support.redis_cluster import running_cluster
from tests.support.settings import redis_at, redis_down

router = Router()


@router.get("/redis-read", auth=Auth.PUBLIC)
def redis_read(req: Request[None, None]) -> dict[str, Any]:
    return {"value": get_redis().get("anything")}


@router.get("/bug", auth=Auth.PUBLIC)
def bug(req: Request[None, None]) -> dict[str, Any]:
    raise KeyError("not a dependency")


handler = http_handler(redis_read, bug)


@pytest.fixture
def dead_redis() -> Iterator[None]:
    with redis_down():
        yield


def test_an_unreachable_redis_is_503(dead_redis: None) -> None:
    with capture_logs() as logs:
        reply = call(handler, "GET", "/redis-read")
    assert reply.status == 503
    assert reply.json()["code"] == "SERVICE_UNAVAILABLE"
    assert reply.json()["request_id"] == reply.header("X-Request-Id")
    assert logs.where(message="dependency unavailable")
    assert not logs.where(message="unhandled error")


def test_a_redis_cluster_no_node_of_which_answers_is_503() -> None:
    # The cluster client reads the slot map while it is built, so here get_redis() fails.
    with redis_at(f"redis+cluster://127.0.0.1:{closed_port()}"):
        reply = call(handler, "GET", "/redis-read")
    assert (reply.status, reply.json()["code"]) == (503, "SERVICE_UNAVAILABLE")


def test_a_redis_cluster_node_down_is_503_for_its_keys_only() -> None:
    with running_cluster() as cluster, redis_at(cluster.url):
        client = get_redis()
        owner = client.get_node_from_key("anything").port
        keys = (f"k{i}" for i in range(100))
        elsewhere = next(k for k in keys if client.get_node_from_key(k).port != owner)
        cluster.stop(owner)
        with capture_logs() as logs:
            reply = call(handler, "GET", "/redis-read")
        assert (reply.status, reply.json()["code"]) == (503, "SERVICE_UNAVAILABLE")
        assert logs.where(message="dependency unavailable", error="ConnectionError")
        assert client.set(elsewhere, "1")  # the other nodes still serve their slots


def test_a_bug_is_still_500() -> None:
    reply = call(handler, "GET", "/bug")
    assert reply.status == 500
    assert reply.json()["code"] == "INTERNAL_ERROR"
