"""The sign-in flows on a real three-node Redis Cluster (the `on_cluster` fixture): SMS codes
and their limits; the flows that sign in (and so start a session) follow the sessions onto
the cluster. Each is a test of the modules beside this one, run again here with the
instance's Redis client on the cluster, so every script runs there with its keys in one
slot, through the functions' own handlers.

A new flow that runs a Redis script or a multi-key command belongs in FLOWS
(shared/app/README.md, "Redis keys").
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.identity import test_sms_codes as sms_tests
from tests.identity.conftest import Flows

FLOWS: list[Callable[[Flows], None]] = [
    # SMS codes: sent (phone's take, IP's take), refused (cooldown, day, IP, with the
    # phone's take given back), failed delivery.
    sms_tests.test_the_code_is_stored_only_as_a_hash,
    sms_tests.test_cooldown_per_phone,
    sms_tests.test_daily_limit_per_phone,
    sms_tests.test_hourly_limit_per_ip,
    sms_tests.test_a_refusal_by_the_ip_leaves_the_phone_limits_untaken,
    sms_tests.test_a_failed_send_is_503_and_does_not_start_the_cooldown,
]


@pytest.mark.parametrize("flow", FLOWS, ids=lambda flow: flow.__name__.removeprefix("test_"))
def test_on_cluster(
    flow: Callable[[Flows], None], flows: Flows, on_cluster: Any, clean_redis: Any
) -> None:
    flow(flows)
    # It ran on the cluster: nothing reached the single Redis of the other tests.
    assert clean_redis.dbsize() == 0
    assert sum(on_cluster.node(port).dbsize() for port in on_cluster.ports) > 0
