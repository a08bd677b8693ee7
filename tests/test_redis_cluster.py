"""The Redis client on a Redis Cluster: REDIS_URL's cluster schemes, the cluster the tests
start (tests/support/redis_cluster.py), hash tags, the errors that mean "unreachable", and
a check that every Redis script of shared/app runs on the cluster in some test."""

from __future__ import annotations

import ast
import shutil
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from redis import exceptions

from app.config import Settings
from app.redis_client import get_redis, is_redis_error, is_unreachable, tag
from tests import test_cache as cache_tests
from tests import test_cache_on_cluster
from tests.identity import test_code_guessing as guessing_tests
from tests.identity import test_on_cluster as identity_on_cluster
from tests.identity import test_refresh_sessions as sessions_tests
from tests.identity import test_signin as signin_tests
from tests.identity import test_sms_codes as sms_tests
from tests.queue import test_scf_backend as scf_tests
from tests.queue import test_scf_on_cluster
from tests.realtime import test_on_cluster as realtime_on_cluster
from tests.realtime import test_order as order_tests
from tests.realtime import test_presence_clock as presence_clock_tests
from tests.realtime import test_websocket as websocket_tests
from tests.runner import test_runner_rules as runner_rules
from tests.runner import test_slots_on_cluster
from tests.support import redis_cluster as redis_cluster_support
from tests.support.function_url import call
from tests.support.functions import handler
from tests.support.redis_cluster import running_cluster

APP = Path(__file__).resolve().parents[1] / "shared" / "app"

# Every Lua script of shared/app, and a test of a FLOWS (or SLOT_RULES) list of the
# `*_on_cluster` modules that runs it on the cluster.
ON_CLUSTER: dict[str, Callable[..., None]] = {
    "app.identity.sessions._START": sessions_tests.test_each_device_has_its_own_session,
    "app.identity.sessions._ROTATE": (
        sessions_tests.test_a_retired_token_after_the_grace_window_ends_the_session
    ),
    "app.identity.sessions._END_ALL": sessions_tests.test_logout_all_ends_every_session,
    "app.identity.sms._TAKE_PHONE": sms_tests.test_cooldown_per_phone,
    "app.identity.sms._GIVE_BACK_PHONE": (
        sms_tests.test_a_refusal_by_the_ip_leaves_the_phone_limits_untaken
    ),
    "app.identity.sms._DROP_CODE": (
        sms_tests.test_a_send_that_fails_is_503_and_takes_nothing_of_the_phone_or_the_budget
    ),
    "app.identity.sms._VERIFY": (
        guessing_tests.test_a_right_code_with_a_bad_invite_is_referrer_invalid_and_tries_few
    ),
    "app.counters._TAKE": signin_tests.test_failures_per_ip_are_capped,
    "app.counters._TAKE_SLIDING": (
        signin_tests.test_failed_logins_lock_password_login_but_not_code_login
    ),
    "app.counters._GIVE_BACK": (
        signin_tests.test_the_right_password_of_a_disabled_account_is_no_failed_guess
    ),
    "app.cache._STORE_IF_LOCKED": cache_tests.test_miss_loads_and_stores_then_hit_does_not_load,
    "app.cache._RELEASE": cache_tests.test_loader_exception_reaches_the_caller_and_stores_nothing,
    "app.cache._RELEASE_HOLD": (
        cache_tests.test_a_held_change_stops_the_store_and_its_release_lets_the_next_load_store
    ),
    "app.runner.slots._ACQUIRE": runner_rules.test_concurrent_acquires_never_exceed_the_cap,
    "app.runner.slots._RENEW": runner_rules.test_a_slot_handed_on_is_renewed_only_while_still_held,
    "app.runner.slots._IN_USE": (
        runner_rules.test_a_slot_whose_holder_died_is_free_again_when_its_lease_ends
    ),
    "app.queue.scf._CLAIM_DUE": scf_tests.test_a_delayed_message_waits_in_redis_until_due,
    "app.realtime.acks._ADVANCE": (
        websocket_tests.test_an_acknowledgement_never_moves_back_or_past_what_was_sent
    ),
    "app.realtime.presence._ADMIT": (
        websocket_tests.test_a_user_holds_at_most_max_per_user_connections_at_once
    ),
    "app.realtime.presence._ENTER": (
        presence_clock_tests.test_a_clock_ahead_leaves_another_instance_s_live_connections_alone
    ),
    "app.realtime.presence._CONNECTED": (
        presence_clock_tests.test_a_connection_entered_by_a_clock_behind_counts_for_everyone
    ),
    "app.realtime.streams._APPEND": (
        order_tests.test_a_running_pushed_after_the_cancel_is_never_sent_after_it
    ),
}
# Scripts not run on the cluster, and why.
NOT_ON_CLUSTER: dict[str, str] = {}


def _scripts() -> set[str]:
    """`module.NAME` of every string constant holding `redis.call(` in shared/app (or
    `module:line` for one that is not a module-level assignment)."""
    found = set()
    for path in APP.rglob("*.py"):
        module = ".".join(("app", *path.relative_to(APP).with_suffix("").parts))
        tree = ast.parse(path.read_text())
        named = {
            id(node.value): f"{module}.{node.targets[0].id}"
            for node in tree.body
            if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name)
        }
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and "redis.call(" in str(node.value):
                found.add(named.get(id(node), f"{module}:{node.lineno}"))
    return found


def test_every_script_runs_on_the_cluster() -> None:
    assert _scripts() == set(ON_CLUSTER) | set(NOT_ON_CLUSTER), (
        "a Redis script was added or removed: run it on the cluster (shared/app/README.md, "
        '"Redis keys") and list it in ON_CLUSTER'
    )
    on_cluster = [
        *identity_on_cluster.FLOWS,
        *test_cache_on_cluster.FLOWS,
        *test_slots_on_cluster.SLOT_RULES,
        *test_scf_on_cluster.FLOWS,
        *realtime_on_cluster.FLOWS,
        *realtime_on_cluster.PRESENCE_RULES,
    ]
    for script, test in ON_CLUSTER.items():
        assert test in on_cluster, f"{script}: {test.__name__} does not run on the cluster"


def test_the_cluster_has_three_primaries_serving_every_slot(redis_cluster: Any) -> None:
    for port in redis_cluster.ports:
        info = redis_cluster.info(port)
        assert info["cluster_state"] == "ok"
        assert int(info["cluster_slots_assigned"]) == 16384
        assert int(info["cluster_size"]) == 3


def test_a_node_whose_port_was_taken_starts_again_on_new_ports(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The port is taken between the helper's check and the node's bind, as a client
    # connection of another test can: the node exits, and the helper tries new ports.
    choices: list[tuple[int, ...]] = []
    free_ports = redis_cluster_support._free_ports
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()

        def first_one_taken(count: int) -> tuple[int, ...]:
            ports = free_ports(count)
            choices.append((taken.getsockname()[1], *ports[1:]) if not choices else ports)
            return choices[-1]

        monkeypatch.setattr(redis_cluster_support, "_free_ports", first_one_taken)
        with running_cluster() as cluster:
            assert len(choices) == 2
            assert cluster.ports == choices[1]
            assert cluster.info(cluster.ports[0])["cluster_state"] == "ok"


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
