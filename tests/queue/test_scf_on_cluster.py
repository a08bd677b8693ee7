"""The `scf` backend's delayed messages on a real three-node Redis Cluster (the `on_cluster`
fixture): parked in one sorted set per queue, claimed by a script on that one key, and found
by a scan that visits every node. The tests of test_scf_backend.py named in FLOWS run again
here with the instance's client on the cluster."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.fakes.tencentcloud import FakeTencentCloud
from tests.queue import test_scf_backend as scf_tests

FLOWS: list[Callable[[FakeTencentCloud], None]] = [
    scf_tests.test_a_delayed_message_waits_in_redis_until_due,
    scf_tests.test_a_failed_release_puts_the_message_back,
]


@pytest.mark.parametrize("flow", FLOWS, ids=lambda flow: flow.__name__.removeprefix("test_"))
def test_on_cluster(
    flow: Callable[[FakeTencentCloud], None],
    on_cluster: Any,
    cloud: FakeTencentCloud,
    clean_redis: Any,
) -> None:
    flow(cloud)
    assert clean_redis.dbsize() == 0  # it ran on the cluster
