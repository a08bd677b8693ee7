"""The fake Tencent Cloud endpoint checks SCF requests against the official schema (tccli's
api.json) and refuses, with the API's own error codes, what the real API would refuse:
an unknown action, an unknown (misspelt) parameter, a missing required one, a value of the
wrong type, at any depth. A request that fits reaches its handler."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from tencentcloud.common import credential
from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException
from tencentcloud.common.profile.client_profile import ClientProfile
from tencentcloud.common.profile.http_profile import HttpProfile
from tencentcloud.scf.v20180416.scf_client import ScfClient

from tests.fakes import api_schema
from tests.fakes.tencentcloud import FakeTencentCloud

SCHEMA = api_schema.load("scf", "v20180416")
GOOD = {
    "FunctionName": "ai-platform-test-health",
    "Code": {"ZipFile": "UEsFBgAAAAAAAAAAAAAAAAAAAAAAAA=="},
    "MemorySize": 256,
    "Environment": {"Variables": [{"Key": "APP_ENV", "Value": "production"}]},
    "Layers": [{"LayerName": "ai-platform-app", "LayerVersion": 1}],
}

NO_CODE = {k: v for k, v in GOOD.items() if k != "Code"}


@pytest.fixture
def scf() -> Iterator[tuple[ScfClient, FakeTencentCloud]]:
    with FakeTencentCloud() as fake:
        fake.validate_with("scf", SCHEMA.validate)
        fake.on("CreateFunction", lambda params, call: {})
        http = HttpProfile(protocol="http", endpoint=fake.endpoint)
        cred = credential.Credential(fake.secret_id, fake.secret_key)
        yield ScfClient(cred, "ap-guangzhou", ClientProfile(httpProfile=http)), fake


def _refusal(client: ScfClient, action: str, params: dict[str, Any]) -> tuple[str, str]:
    with pytest.raises(TencentCloudSDKException) as refused:
        client.call_json(action, params)
    return refused.value.get_code(), refused.value.get_message()


def test_the_schema_is_scf_2018_04_16_with_the_actions_the_deployer_calls() -> None:
    assert SCHEMA.version == "2018-04-16"
    for action in ("CreateFunction", "CreateTrigger", "CreateCustomDomain", "PublishLayerVersion"):
        assert action in SCHEMA.actions
    assert "UpdateFunctionEventInvokeConfig" in SCHEMA.actions


def test_a_request_that_fits_the_schema_reaches_its_handler(scf: Any) -> None:
    client, fake = scf
    client.call_json("CreateFunction", GOOD)
    assert [call.action for call in fake.calls] == ["CreateFunction"]
    assert fake.refused == []


@pytest.mark.parametrize(
    ("action", "params", "code", "where"),
    [
        ("CreateFunctions", GOOD, "InvalidAction", "CreateFunctions"),
        ("CreateFunction", {**GOOD, "FunctionNme": "x"}, "UnknownParameter", "FunctionNme"),
        ("CreateFunction", {**GOOD, "Code": {"Zipfile": "x"}}, "UnknownParameter", "Code.Zipfile"),
        (
            "CreateFunction",
            {k: v for k, v in GOOD.items() if k != "Code"},
            "MissingParameter",
            "Code",
        ),
        ("CreateFunction", {**GOOD, "MemorySize": "256"}, "InvalidParameter", "MemorySize"),
        ("CreateFunction", {**GOOD, "MemorySize": True}, "InvalidParameter", "MemorySize"),
        ("CreateFunction", {**GOOD, "Layers": {}}, "InvalidParameter", "Layers"),
        (
            "CreateFunction",
            {**GOOD, "Layers": [{"LayerName": "ai-platform-app"}]},
            "MissingParameter",
            "Layers.0.LayerVersion",
        ),
        (
            "CreateFunction",
            {**GOOD, "Environment": {"Variables": [{"Key": "A", "Value": 1}]}},
            "InvalidParameter",
            "Environment.Variables.0.Value",
        ),
        ("ListTriggers", {"FunctionName": "f", "Limit": -1}, "InvalidParameterValue", "Limit"),
    ],
)
def test_a_request_that_does_not_fit_is_refused_as_the_api_refuses_it(
    scf: Any, action: str, params: dict[str, Any], code: str, where: str
) -> None:
    client, fake = scf
    assert _refusal(client, action, params)[0] == code
    assert f"`{where}`" in _refusal(client, action, params)[1]
    assert fake.calls == []
    assert {entry["code"] for entry in fake.refused} == {code}
