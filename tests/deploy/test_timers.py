"""The fake takes a timer as SCF's timer trigger page and CreateTrigger's schema describe it
(tests/fakes/scf_routing.py): a name of letters, digits, - and _ that starts with a letter,
and an argument of at most 4 KB, so a deployer that sent anything else would fail here as
against SCF. The deployer checks both before any call (test_changes.py)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException

from tests.deploy.conftest import NAMESPACE, PREFIX, Account
from tests.deploy.test_url_removal import _client

TIMER = {
    "Namespace": NAMESPACE,
    "FunctionName": PREFIX + "invite-refill",
    "Type": "timer",
    "TriggerDesc": "0 0 3 * * * *",
}


@pytest.mark.parametrize(
    ("name", "argument", "code"),
    [
        ("1-nightly", "", "InvalidParameterValue.TriggerName"),
        ("nightly.run", "", "InvalidParameterValue.TriggerName"),
        ("n" + "x" * 100, "", "InvalidParameterValue.TriggerName"),
        ("nightly", "x" * 4097, "InvalidParameterValue.CustomArgument"),
    ],
    ids=["starts with a digit", "a dot", "101 characters", "an argument over 4 KB"],
)
def test_a_timer_scf_refuses_is_refused(
    deployed: Account, name: str, argument: str, code: str
) -> None:
    client = _client(deployed)
    with pytest.raises(TencentCloudSDKException) as refused:
        params = {**TIMER, "TriggerName": name, "CustomArgument": argument}
        client.call_json("CreateTrigger", params)
    assert refused.value.get_code() == code
    deployed.cloud.refused.clear()  # refused on purpose: the fixture checks for none


def test_the_longest_name_and_argument_are_taken(deployed: Account) -> None:
    name = "n" + "x_-9" * 24 + "abc"
    assert len(name) == 100
    params = {**TIMER, "TriggerName": name, "CustomArgument": "x" * 4096}
    _client(deployed).call_json("CreateTrigger", params)
    timers = deployed.scf.triggers[NAMESPACE, PREFIX + "invite-refill"]
    assert name in [timer["TriggerName"] for timer in timers]


def test_an_argument_given_then_taken_away_is_updated_in_place(deployed: Account) -> None:
    """UpdateTrigger keeps an argument left out and empties one sent empty (its text in
    the schema): taking the argument out of the file sends it empty."""
    sweeper = PREFIX + "saga-sweeper"

    def given(data: dict[str, Any]) -> None:
        data["functions"]["saga-sweeper"]["timers"][0]["argument"] = '{"batch": 5}'

    assert deployed.deploy("apply", config=deployed.edited_config(given)).code == 0
    (call,) = deployed.scf.writes()
    assert (call.action, call.params["CustomArgument"]) == ("UpdateTrigger", '{"batch": 5}')
    (timer,) = deployed.scf.triggers[NAMESPACE, sweeper]
    assert timer["CustomArgument"] == '{"batch": 5}'

    def taken_away(data: dict[str, Any]) -> None:
        data["functions"]["saga-sweeper"]["timers"][0]["enabled"] = False

    deployed.cloud.calls.clear()
    result = deployed.deploy("apply", config=deployed.edited_config(taken_away))
    assert result.code == 0, result.output
    assert result.changes == [
        f"~ update timer {sweeper}/saga-sweeper enabled: True -> False",
        f'~ update timer {sweeper}/saga-sweeper argument: {{"batch": 5}} -> (none)',
    ]
    (call,) = deployed.scf.writes()
    assert call.action == "UpdateTrigger"
    assert (call.params["CustomArgument"], call.params["Enable"]) == ("", "CLOSE")
    (timer,) = deployed.scf.triggers[NAMESPACE, sweeper]
    assert (timer["CustomArgument"], timer["Enable"]) == ("", 0)
    assert json.loads(timer["TriggerDesc"]) == {"cron": "0 */1 * * * * *"}
