"""Realtime on a real three-node Redis Cluster (the `on_cluster` fixture): the local cloud's
functions and its /ws connections with their Redis clients on the cluster, so the outbox,
the acknowledgement script (its position and the stream under one user's tag), presence and
the blocking read all run there.

A new realtime flow that runs a Redis script or a multi-key command belongs in FLOWS
(shared/app/README.md, "Redis keys").
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.realtime import test_order as order_tests
from tests.realtime import test_presence_clock as presence_clock
from tests.realtime import test_websocket as ws_tests

FLOWS: list[Callable[[Any], None]] = [
    ws_tests.test_a_user_sees_running_then_succeeded_of_its_own_task_and_nothing_of_anothers,
    ws_tests.test_what_was_not_acknowledged_comes_again_in_order_with_the_same_ids,
    ws_tests.test_an_acknowledgement_never_moves_back_or_past_what_was_sent,
    ws_tests.test_what_one_device_acknowledged_still_comes_to_another_at_its_next_connect,
    ws_tests.test_two_connections_of_one_user_both_receive,
    ws_tests.test_a_user_holds_at_most_max_per_user_connections_at_once,
    order_tests.test_a_running_pushed_after_the_cancel_is_never_sent_after_it,
]


# Presence's scripts called straight, with the instance's clients on the cluster: no flow
# above lives past REFRESH_S to refresh its entry, nor asks whether its user is connected.
PRESENCE_RULES: list[Callable[[], None]] = [
    presence_clock.test_a_clock_ahead_leaves_another_instance_s_live_connections_alone,
    presence_clock.test_a_connection_entered_by_a_clock_behind_counts_for_everyone,
]


@pytest.mark.parametrize("flow", FLOWS, ids=[flow.__name__ for flow in FLOWS])
def test_on_cluster(flow: Callable[[Any], None], cloud: Any, on_cluster: Any) -> None:
    flow(cloud)


@pytest.mark.parametrize(
    "rule", PRESENCE_RULES, ids=lambda rule: rule.__name__.removeprefix("test_")
)
def test_presence_on_cluster(rule: Callable[[], None], on_cluster: Any, clean_redis: Any) -> None:
    rule()
    assert clean_redis.dbsize() == 0  # it ran on the cluster
