"""The fake takes, in each state SCF reports of a function, what SCF takes (tests/fakes/scf.py
names the sources)."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import pytest
from tencentcloud.common import credential
from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException
from tencentcloud.common.profile.client_profile import ClientProfile
from tencentcloud.common.profile.http_profile import HttpProfile
from tencentcloud.scf.v20180416.scf_client import ScfClient

from tests.deploy.conftest import PREFIX, Account

HEALTH = PREFIX + "health"


@pytest.fixture
def deployed(account: Account) -> Iterator[Account]:
    result = account.deploy("apply")
    assert result.code == 0, result.output
    account.cloud.calls.clear()
    yield account
    assert account.cloud.refused == []


def _client(account: Account) -> ScfClient:
    http = HttpProfile(protocol="http", endpoint=account.cloud.endpoint)
    cred = credential.Credential(account.cloud.secret_id, account.cloud.secret_key)
    return ScfClient(cred, "ap-guangzhou", ClientProfile(httpProfile=http))


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
    name = {"FunctionName": HEALTH}
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
