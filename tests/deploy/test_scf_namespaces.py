"""The fake SCF's namespaces, through the SDK as the deployer calls it: CreateNamespace and
ListNamespaces with the schema's parameters, refused as the API refuses them (a name taken,
invalid, `default`, one namespace too many), and functions held per namespace: none in a
namespace that does not exist, none past 50 in one, a name free again in another."""

from __future__ import annotations

import base64
import io
import zipfile
from collections.abc import Iterator
from typing import Any

import pytest
from tencentcloud.common import credential
from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException
from tencentcloud.common.profile.client_profile import ClientProfile
from tencentcloud.common.profile.http_profile import HttpProfile
from tencentcloud.scf.v20180416.scf_client import ScfClient

from tests.fakes.scf import FakeScf
from tests.fakes.tencentcloud import FakeTencentCloud


def _zip() -> str:
    data = io.BytesIO()
    with zipfile.ZipFile(data, "w") as archive:
        archive.writestr("index.py", "def main_handler(event, context):\n    return 1\n")
    return base64.b64encode(data.getvalue()).decode()


CODE = {"ZipFile": _zip()}


@pytest.fixture
def scf() -> Iterator[tuple[ScfClient, FakeScf]]:
    with FakeTencentCloud() as cloud:
        fake = FakeScf(cloud, settle_s=0.0)
        http = HttpProfile(protocol="http", endpoint=cloud.endpoint)
        cred = credential.Credential(cloud.secret_id, cloud.secret_key)
        yield ScfClient(cred, "ap-guangzhou", ClientProfile(httpProfile=http)), fake


def _call(client: ScfClient, action: str, **params: Any) -> dict[str, Any]:
    return dict(client.call_json(action, params)["Response"])


def _refusal(client: ScfClient, action: str, **params: Any) -> str:
    with pytest.raises(TencentCloudSDKException) as refused:
        client.call_json(action, params)
    return str(refused.value.get_code())


def _names(client: ScfClient, **params: Any) -> list[str]:
    return [ns["Name"] for ns in _call(client, "ListNamespaces", **params)["Namespaces"]]


def test_a_namespace_is_created_once_and_listed(scf: Any) -> None:
    client, _fake = scf
    assert _names(client) == ["default"]

    _call(client, "CreateNamespace", Namespace="ai-platform-prod", Description="prod")

    answer = _call(client, "ListNamespaces", Limit=1, Offset=0)
    assert answer["TotalCount"] == 2
    assert [ns["Name"] for ns in answer["Namespaces"]] == ["ai-platform-prod"]
    (made,) = answer["Namespaces"]
    assert (made["Description"], made["Type"]) == ("prod", "default")
    assert set(made) == {"Name", "Description", "AddTime", "ModTime", "Type"}
    search = [{"Key": "Namespace", "Value": "prod"}]
    assert _names(client, SearchKey=search) == ["ai-platform-prod"]
    assert _refusal(client, "CreateNamespace", Namespace="ai-platform-prod") == (
        "ResourceInUse.Namespace"
    )
    assert _names(client) == ["ai-platform-prod", "default"]


@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("default", "InvalidParameterValue.DefaultNamespace"),
        ("a" * 31, "InvalidParameterValue.NamespaceInvalid"),
        ("ai.platform", "InvalidParameterValue.NamespaceInvalid"),
        ("ai platform", "InvalidParameterValue.NamespaceInvalid"),
        ("", "InvalidParameterValue.NamespaceInvalid"),
    ],
)
def test_a_name_the_api_refuses_creates_nothing(scf: Any, name: str, code: str) -> None:
    client, _fake = scf
    assert _refusal(client, "CreateNamespace", Namespace=name) == code
    assert _names(client) == ["default"]


def test_the_longest_name_and_every_allowed_character_are_taken(scf: Any) -> None:
    client, _fake = scf
    _call(client, "CreateNamespace", Namespace="A-z_09" + "x" * 24)
    assert "A-z_09" + "x" * 24 in _names(client)


def test_a_sixth_namespace_is_over_the_region_limit(scf: Any) -> None:
    client, _fake = scf
    for number in range(4):
        _call(client, "CreateNamespace", Namespace=f"ns{number}")
    assert _refusal(client, "CreateNamespace", Namespace="ns4") == "LimitExceeded.Namespace"
    assert len(_names(client)) == 5


def test_a_namespace_request_is_checked_against_the_schema(scf: Any) -> None:
    client, _fake = scf
    assert _refusal(client, "CreateNamespace", Name="ns") == "UnknownParameter"
    assert _refusal(client, "CreateNamespace", Namespace=5) == "InvalidParameter"
    assert _refusal(client, "ListNamespaces", Limit="10") == "InvalidParameter"


def _create(client: ScfClient, name: str, namespace: str) -> None:
    _call(
        client,
        "CreateFunction",
        FunctionName=name,
        Namespace=namespace,
        Runtime="Python3.10",
        Handler="index.main_handler",
        Code=CODE,
    )


def test_a_function_needs_its_namespace_to_exist(scf: Any) -> None:
    client, fake = scf
    missing = _refusal(
        client,
        "CreateFunction",
        FunctionName="health",
        Namespace="ai-platform-prod",
        Handler="index.main_handler",
        Code=CODE,
    )
    assert missing == "ResourceNotFound.Namespace"
    assert fake.functions == {}
    gone = _refusal(client, "GetFunction", FunctionName="health", Namespace="ai-platform-prod")
    assert gone == "ResourceNotFound.Namespace"


def test_a_name_is_one_function_per_namespace(scf: Any) -> None:
    client, _fake = scf
    _call(client, "CreateNamespace", Namespace="ai-platform-prod")
    _create(client, "health", "default")
    _create(client, "health", "ai-platform-prod")
    _create(client, "other", "ai-platform-prod")

    listed = _call(client, "ListFunctions", Namespace="ai-platform-prod", SearchKey="heal")
    assert [(f["Namespace"], f["FunctionName"]) for f in listed["Functions"]] == [
        ("ai-platform-prod", "health")
    ]
    assert listed["TotalCount"] == 1
    in_default = _call(client, "ListFunctions")["Functions"]
    assert [f["FunctionName"] for f in in_default] == ["health"]
    answer = _call(client, "GetFunction", FunctionName="other", Namespace="ai-platform-prod")
    assert answer["Namespace"] == "ai-platform-prod"
    assert _refusal(client, "GetFunction", FunctionName="other") == "ResourceNotFound.Function"


def test_a_51st_function_in_one_namespace_is_refused(scf: Any) -> None:
    client, fake = scf
    _call(client, "CreateNamespace", Namespace="full")
    for number in range(50):
        _create(client, f"fn{number}", "full")
    code = _refusal(
        client,
        "CreateFunction",
        FunctionName="fn50",
        Namespace="full",
        Handler="index.main_handler",
        Code=CODE,
    )
    assert code == "LimitExceeded.Function"
    assert len(fake.functions) == 50
    _create(client, "fn50", "default")  # another namespace has room
