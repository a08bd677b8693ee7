"""The sign-in flows on a real three-node Redis Cluster (the `on_cluster` fixture): SMS codes
and their limits, the password login throttle, sessions from start to end-all. Each is a
test of the modules beside this one, run again here with the instance's Redis client on the
cluster, so every identity script runs there with its keys in one slot, through the
functions' own handlers.

A new flow that runs a Redis script or a multi-key command belongs in FLOWS
(shared/app/README.md, "Redis keys").
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.identity import test_code_guessing as guessing_tests
from tests.identity import test_refresh_sessions as sessions_tests
from tests.identity import test_signin as signin_tests
from tests.identity import test_sms_codes as sms_tests
from tests.identity import test_users_admin as admin_tests
from tests.identity.conftest import Flows

FLOWS: list[Callable[[Flows], None]] = [
    # SMS codes: sent (phone's take, IP's take), refused (cooldown, day, IP, with the
    # phone's take given back), failed delivery (an outage, a refused number), consumed,
    # burnt; at registration checked, struck for a bad referrer, then used; wrong guesses
    # counted per client network.
    sms_tests.test_the_code_is_stored_only_as_a_hash,
    sms_tests.test_cooldown_per_phone,
    sms_tests.test_daily_limit_per_phone,
    sms_tests.test_hourly_limit_per_ip,
    sms_tests.test_a_refusal_by_the_ip_leaves_the_phone_limits_untaken,
    sms_tests.test_a_send_that_fails_is_503_and_takes_nothing_of_the_phone_or_the_budget,
    sms_tests.test_a_number_the_provider_refuses_keeps_its_limits_but_not_the_budget,
    signin_tests.test_wrong_used_and_cross_purpose_codes_are_refused,
    signin_tests.test_a_code_is_burnt_after_five_wrong_tries,
    guessing_tests.test_a_right_code_with_a_bad_invite_is_referrer_invalid_and_tries_few,
    guessing_tests.test_wrong_codes_per_ip_are_bounded_over_every_phone,
    signin_tests.test_registered_phone_lookups_are_rate_limited_per_ip,
    # The password login throttle: reserve (phone, then IP), fail, succeed, give back.
    signin_tests.test_failed_logins_lock_password_login_but_not_code_login,
    signin_tests.test_parallel_wrong_passwords_cannot_outrun_the_lock,
    signin_tests.test_the_right_password_of_a_disabled_account_is_no_failed_guess,
    signin_tests.test_success_clears_the_failure_count,
    signin_tests.test_failures_per_ip_are_capped,
    signin_tests.test_a_refusal_by_the_ip_gives_the_phone_its_attempt_back,
    # Sessions: start, rotate, grace, reuse, end, end-all (by the user and by disabling).
    sessions_tests.test_refresh_rotates_and_the_new_pair_works,
    sessions_tests.test_a_retired_token_within_the_grace_window_gets_the_identical_pair,
    sessions_tests.test_a_retired_token_after_the_grace_window_ends_the_session,
    sessions_tests.test_grace_window_is_thirty_seconds,
    sessions_tests.test_each_device_has_its_own_session,
    sessions_tests.test_logout_ends_only_this_session,
    sessions_tests.test_logout_all_ends_every_session,
    sessions_tests.test_twenty_concurrent_refreshes_of_one_token_make_one_new_session_state,
    admin_tests.test_admin_patch_role_and_disable,
]


@pytest.mark.parametrize("flow", FLOWS, ids=lambda flow: flow.__name__.removeprefix("test_"))
def test_on_cluster(
    flow: Callable[[Flows], None], flows: Flows, on_cluster: Any, clean_redis: Any
) -> None:
    flow(flows)
    # It ran on the cluster: nothing reached the single Redis of the other tests.
    assert clean_redis.dbsize() == 0
    assert sum(on_cluster.node(port).dbsize() for port in on_cluster.ports) > 0
