"""Host slots on a real three-node Redis Cluster (the `on_cluster` fixture): the rules of
test_runner_rules.py and test_slot_clock.py run again with the instance's client on the
cluster, and a fork whose branches take, hand on and return their host's slots through the
worker."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.fakes.upstream import FakeUpstream
from tests.runner import test_runner_rules as rules
from tests.runner import test_slot_clock as slot_clock
from tests.support.pipelines import Worker

SLOT_RULES: list[Callable[[], None]] = [
    rules.test_a_slot_whose_holder_died_is_free_again_when_its_lease_ends,
    rules.test_a_slot_handed_on_is_renewed_only_while_still_held,
    rules.test_concurrent_acquires_never_exceed_the_cap,
    slot_clock.test_an_instance_whose_clock_runs_ahead_leaves_another_s_live_slot_alone,
    slot_clock.test_a_slot_taken_or_renewed_by_an_instance_whose_clock_runs_behind_is_counted,
]


@pytest.mark.parametrize("rule", SLOT_RULES, ids=lambda rule: rule.__name__.removeprefix("test_"))
def test_on_cluster(rule: Callable[[], None], on_cluster: Any, clean_redis: Any) -> None:
    rule()
    assert clean_redis.dbsize() == 0  # it ran on the cluster


def test_a_fork_takes_and_returns_host_slots_on_the_cluster(
    on_cluster: Any, clean_redis: Any, worker: Worker
) -> None:
    with FakeUpstream() as upstream:
        rules.test_a_branch_run_after_its_predecessor_in_the_same_invocation_stops_at_cancel(
            worker, upstream
        )
    assert clean_redis.dbsize() == 0
