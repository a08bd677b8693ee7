"""A function or layer version SCF left failed (infra/deploy/status.py has the sources):
the report names it, its state, SCF's reason and what the next deploy does; the next deploy
deletes and creates again a function whose creation failed, sends again the code and the
configuration of one whose update failed, publishes again a layer whose publication failed,
and stops before any write at a function being deleted or whose deletion failed. And the
fake takes, in each state, what SCF takes."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from tencentcloud.common import credential
from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException
from tencentcloud.common.profile.client_profile import ClientProfile
from tencentcloud.common.profile.http_profile import HttpProfile
from tencentcloud.scf.v20180416.scf_client import ScfClient

from tests.deploy.conftest import NAMESPACE, PREFIX, Account

HEALTH = PREFIX + "health"
CREATED = f"+ create function {HEALTH} (Python3.10, 256 MB, 10 s, layer ai-platform-app:1)"


def _writes(account: Account, name: str = HEALTH) -> list[str]:
    return [c.action for c in account.scf.writes() if c.params.get("FunctionName") == name]


def _client(account: Account) -> ScfClient:
    http = HttpProfile(protocol="http", endpoint=account.cloud.endpoint)
    cred = credential.Credential(account.cloud.secret_id, account.cloud.secret_key)
    return ScfClient(cred, "ap-guangzhou", ClientProfile(httpProfile=http))


def _status(account: Account, name: str = HEALTH) -> str:
    answer = _client(account).call_json(
        "GetFunction", {"FunctionName": name, "Namespace": NAMESPACE}
    )
    return str(answer["Response"]["Status"])


def test_a_function_scf_failed_to_create_is_deleted_and_created_again(account: Account) -> None:
    account.scf.fail_next_change(HEALTH, "InternalError.System", "no capacity")
    failed = account.deploy("apply")
    assert failed.code == 1
    reason = "CreateFailed (InternalError.System: no capacity)"
    assert failed.lines[-6] == (
        f"error: GetFunction: CreateFailed: function {HEALTH} is {reason}: it never ran; "
        "the next deploy deletes it and creates it again"
    )
    assert failed.last == f"begun, not finished: {CREATED}"

    plan = account.deploy("plan")
    assert plan.code == 0, plan.output
    replaced = [f"- remove function {HEALTH} ({reason}: it never ran)", CREATED]
    assert plan.changes[:3] == [*replaced, f"+ create function-url {HEALTH} (auth NONE, internet)"]

    account.cloud.calls.clear()
    applied = account.deploy("apply")
    assert applied.code == 0, applied.output
    assert applied.changes[:2] == replaced
    # Created anew, it gets its reserved concurrency (health is capped) with its URL.
    assert _writes(account) == [
        "DeleteFunction",
        "CreateFunction",
        "CreateTrigger",
        "PutReservedConcurrencyConfig",
    ]
    assert _status(account) == "Active"
    account.cloud.calls.clear()
    assert account.deploy("apply").code == 0
    assert account.scf.writes() == []


def test_a_deletion_scf_has_not_begun_yet_is_waited_for(account: Account) -> None:
    """DeleteFunction only starts the deletion: GetFunction may still show CreateFailed for
    a moment, which is no failure of the deletion."""
    account.scf.fail_next_change(HEALTH, "InternalError.System", "no capacity")
    assert account.deploy("apply").code == 1
    account.scf.deletion_shows_late_s = 0.5
    account.cloud.calls.clear()
    applied = account.deploy("apply")
    assert applied.code == 0, applied.output
    # Created anew, it gets its reserved concurrency (health is capped) with its URL.
    assert _writes(account) == [
        "DeleteFunction",
        "CreateFunction",
        "CreateTrigger",
        "PutReservedConcurrencyConfig",
    ]
    assert _status(account) == "Active"


def test_a_function_scf_failed_to_delete_stops_the_deploy_before_any_write(
    account: Account,
) -> None:
    account.scf.fail_next_change(HEALTH, "InternalError.System", "no capacity")
    assert account.deploy("apply").code == 1
    account.scf.fail_next_change(HEALTH, "InternalError.System", "storage busy")
    failed = account.deploy("apply")
    assert failed.code == 1
    reason = "DeleteFailed (InternalError.System: storage busy)"
    advice = (
        f"SCF failed to delete it; delete it again (`tccli scf DeleteFunction --Namespace "
        f"{NAMESPACE} --FunctionName {HEALTH}`, or ask Tencent Cloud support if that fails too),"
        " then deploy again"
    )
    assert f"error: GetFunction: DeleteFailed: function {HEALTH} is {reason}: {advice}" in (
        failed.lines
    )
    assert failed.lines[-2:] == [
        f"begun, not finished: - remove function {HEALTH} (CreateFailed "
        "(InternalError.System: no capacity): it never ran)",
        f"begun, not finished: {CREATED}",
    ]

    account.cloud.calls.clear()
    for command in ("plan", "apply"):
        stopped = account.deploy(command)
        assert stopped.code == 2
        assert f"! function {HEALTH} is {reason}: {advice}" in stopped.lines
    assert stopped.last == "apply: stopped before any write"
    assert account.scf.writes() == []


def test_a_function_being_deleted_stops_the_deploy_before_any_write(deployed: Account) -> None:
    deployed.scf.leave(HEALTH, "Deleting")
    for command in ("plan", "apply"):
        stopped = deployed.deploy(command)
        assert stopped.code == 2
        assert stopped.changes == [
            f"! function {HEALTH} is Deleting: SCF is deleting it; deploy again once "
            f"`tccli scf GetFunction --Namespace {NAMESPACE} --FunctionName {HEALTH}` answers "
            "ResourceNotFound.Function"
        ]
    assert deployed.scf.writes() == []


def test_a_function_that_began_deleting_after_the_preview_fails_the_apply(
    deployed: Account,
) -> None:
    """The account changed between the silent preview and the apply (each walk opens with
    ListNamespaces): the apply makes the rest, names what it could not, and does not exit 0."""

    def edit(data: dict[str, Any]) -> None:
        data["functions"]["users-me"] = {"http": True, "memory": 512}

    deployed.scf.before_call(
        "ListNamespaces", lambda: deployed.scf.leave(HEALTH, "Deleting"), skip=1
    )
    applied = deployed.deploy("apply", config=deployed.edited_config(edit))
    assert applied.code == 1, applied.output
    assert deployed.scf.functions[NAMESPACE, PREFIX + "users-me"]["MemorySize"] == 512
    assert f"! function {HEALTH} is Deleting: SCF is deleting it; deploy again once " in (
        applied.output
    )
    assert applied.last == f"apply: not done: function {HEALTH} is Deleting (! above)"


def test_a_function_whose_update_failed_gets_its_code_and_configuration_again(
    deployed: Account,
) -> None:
    def edit(data: dict[str, Any]) -> None:
        data["functions"]["health"]["memory"] = 512

    config = deployed.edited_config(edit)
    deployed.scf.fail_next_change(HEALTH, "InternalError.System", "no capacity for 512 MB")
    failed = deployed.deploy("apply", config=config)
    assert failed.code == 1
    reason = "UpdateFailed (InternalError.System: no capacity for 512 MB)"
    assert failed.lines[-3:] == [
        f"error: GetFunction: UpdateFailed: function {HEALTH} is {reason}: it still runs what "
        "it ran before; the next deploy sends its code and configuration again",
        "nothing was changed before the failure",
        f"begun, not finished: ~ update function {HEALTH} memory: 256 -> 512",
    ]
    assert _status(deployed) == "UpdateFailed"

    # GetFunction shows the memory asked for: only the status says the update did not hold.
    # The reserved concurrency, which follows the memory, was not reached.
    again = [
        f"~ update function {HEALTH} status: {reason} -> Active",
        f"~ update concurrency {HEALTH} reserved: 1280 MB -> 2560 MB (5 x 512 MB)",
    ]
    plan = deployed.deploy("plan", config=config)
    assert (plan.code, plan.changes) == (0, again)

    deployed.cloud.calls.clear()
    applied = deployed.deploy("apply", config=config)
    assert (applied.code, applied.changes) == (0, again)
    assert _writes(deployed) == [
        "UpdateFunctionCode",
        "UpdateFunctionConfiguration",
        "PutReservedConcurrencyConfig",
    ]
    assert _status(deployed) == "Active"
    deployed.cloud.calls.clear()
    assert deployed.deploy("apply", config=config).code == 0
    assert deployed.scf.writes() == []


def test_a_layer_version_scf_failed_to_publish_is_published_again(account: Account) -> None:
    account.scf.fail_next_change("ai-platform-app", "InternalError.System", "storage busy")
    failed = account.deploy("apply")
    assert failed.code == 1
    assert failed.lines[-4] == (
        "error: GetLayerVersion: PublishFailed: layer ai-platform-app version 1 is "
        "PublishFailed: no function is moved to it; the next deploy publishes the content again"
    )
    assert account.scf.functions == {}

    applied = account.deploy("apply")
    assert applied.code == 0, applied.output
    layers = {fn["Layers"][0]["LayerVersion"] for fn in account.scf.functions.values()}
    assert layers == {2}


@pytest.mark.parametrize(
    ("status", "refused"),
    [
        ("CreateFailed", {"UpdateFunctionCode", "UpdateFunctionConfiguration"}),
        ("UpdateFailed", set()),
        ("PublishFailed", set()),
        ("DeleteFailed", {"UpdateFunctionCode", "UpdateFunctionConfiguration"}),
        ("Deleting", {"UpdateFunctionCode", "UpdateFunctionConfiguration", "DeleteFunction"}),
        ("Updating", {"UpdateFunctionCode", "UpdateFunctionConfiguration", "DeleteFunction"}),
    ],
)
def test_the_fake_takes_in_each_state_what_scf_takes(
    deployed: Account, status: str, refused: set[str]
) -> None:
    client = _client(deployed)
    name = {"FunctionName": HEALTH, "Namespace": NAMESPACE}
    code = (deployed.dist / "functions" / "health.zip").read_bytes()
    calls = {
        "UpdateFunctionCode": {**name, "ZipFile": base64.b64encode(code).decode()},
        "UpdateFunctionConfiguration": {**name, "MemorySize": 256},
        "DeleteFunction": name,
    }
    answered = set()
    for action, params in calls.items():
        deployed.scf.leave(HEALTH, status)
        try:
            client.call_json(action, params)
        except TencentCloudSDKException as error:
            assert error.get_code() == f"FailedOperation.{action}", error
            answered.add(action)
    assert answered == refused
