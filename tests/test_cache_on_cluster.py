"""The cache on a real three-node Redis Cluster (the `on_cluster` fixture): loads under the
lock and the script that stores under it, invalidation of keys in different slots, and
pattern invalidation, which must find keys on every node. The tests of test_cache.py named
in FLOWS run again here with the instance's client on the cluster."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from redis.cluster import key_slot

from app import cache
from app.cache import Cache, hold_key, lock_key, redis_key
from app.redis_client import get_redis
from tests import test_cache as cache_tests
from tests.support.net import closed_port
from tests.support.settings import redis_at

FLOWS: list[Callable[[Any], None]] = [
    cache_tests.test_miss_loads_and_stores_then_hit_does_not_load,
    cache_tests.test_a_miss_is_remembered_for_the_negative_ttl,
    cache_tests.test_negative_ttl_zero_remembers_nothing,
    cache_tests.test_loader_exception_reaches_the_caller_and_stores_nothing,
    cache_tests.test_invalidate_drops_values_and_the_next_read_loads,
    cache_tests.test_invalidate_drops_a_remembered_miss,
    cache_tests.test_invalidate_pattern_with_the_default_instance,
    cache_tests.test_a_load_in_flight_during_an_invalidation_is_not_stored,
    cache_tests.test_a_load_in_flight_during_a_pattern_invalidation_is_not_stored,
    cache_tests.test_twenty_concurrent_misses_run_the_loader_once,
    cache_tests.test_waiters_load_themselves_when_the_holder_takes_too_long,
    cache_tests.test_a_waiter_takes_over_when_the_holder_fails,
    cache_tests.test_a_held_change_stops_the_store_and_its_release_lets_the_next_load_store,
]


@pytest.mark.parametrize("flow", FLOWS, ids=lambda flow: flow.__name__.removeprefix("test_"))
def test_on_cluster(flow: Callable[[Any], None], on_cluster: Any, clean_redis: Any) -> None:
    flow(get_redis())
    assert clean_redis.dbsize() == 0  # it ran on the cluster


def test_a_value_and_its_lock_share_a_slot() -> None:
    for key in ("user:u1", "plans:list", "", "a:b:c"):
        assert key_slot(lock_key(key).encode()) == key_slot(redis_key(key).encode())
        assert key_slot(hold_key(key).encode()) == key_slot(redis_key(key).encode())


def _keys_per_node(cluster: Any, match: str) -> list[int]:
    # A set: SCAN may return a key twice while Redis resizes its table.
    return [len(set(cluster.node(port).scan_iter(match=match))) for port in cluster.ports]


def test_invalidate_drops_keys_of_every_node(on_cluster: Any) -> None:
    keys = [f"user:u{i}" for i in range(30)]
    for key in keys:
        cache.get_or_set(key, lambda: {"id": 1}, 60)
    assert all(_keys_per_node(on_cluster, "cache:user:*"))  # spread over the three nodes
    assert cache.invalidate(*keys, "user:never-cached") == 30
    assert _keys_per_node(on_cluster, "cache:*") == [0, 0, 0]


def test_invalidate_pattern_scans_every_node_in_batches(on_cluster: Any) -> None:
    client = get_redis()
    for i in range(600):
        client.set(redis_key(f"plans:{i}"), "1")
        client.set(lock_key(f"plans:{i}"), "a load in flight")
    for i in range(50):
        client.set(redis_key(f"users:{i}"), "1")
    assert all(_keys_per_node(on_cluster, "cache:plans:*"))

    assert Cache(scan_batch=100).invalidate_pattern("plans:*") == 600

    assert _keys_per_node(on_cluster, "cache:plans:*") == [0, 0, 0]
    assert _keys_per_node(on_cluster, "cache-lock:*") == [0, 0, 0]
    assert sum(_keys_per_node(on_cluster, "cache:users:*")) == 50


def test_an_unreachable_cluster_degrades_to_the_loader() -> None:
    # The cluster client reads the slot map while it is built: with no node answering,
    # building it fails, and the cache still answers from the loader.
    with redis_at(f"redis+cluster://127.0.0.1:{closed_port()}"):
        assert cache.get_or_set("user:u1", lambda: {"id": "u1"}, 60) == {"id": "u1"}
        assert cache.invalidate("user:u1") == 0
        assert cache.invalidate_pattern("user:*") == 0
