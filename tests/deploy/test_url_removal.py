"""A function that loses `http: true`: its Function URL goes only once the custom domain no
longer maps its paths. SCF refuses to delete a URL a domain still maps (the fake as the
API: its ListTriggers names the domain's paths as the URL's BoundResources, and its
DeleteTrigger answers FailedOperation.DeleteTrigger.UrlUsed), and were it deleted first,
the domain would send those paths to a URL that no longer exists until its update."""

from __future__ import annotations

import json
from typing import Any

import pytest
from tencentcloud.common import credential
from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException
from tencentcloud.common.profile.client_profile import ClientProfile
from tencentcloud.common.profile.http_profile import HttpProfile
from tencentcloud.scf.v20180416.scf_client import ScfClient

from tests.deploy.conftest import NAMESPACE, PREFIX, Account
from tests.deploy.test_deploy import RESOURCES

USERS_ME = PREFIX + "users-me"
URL = {"Namespace": NAMESPACE, "FunctionName": USERS_ME, "Type": "http"}


def _client(account: Account) -> ScfClient:
    http = HttpProfile(protocol="http", endpoint=account.cloud.endpoint)
    cred = credential.Credential(account.cloud.secret_id, account.cloud.secret_key)
    return ScfClient(cred, "ap-guangzhou", ClientProfile(httpProfile=http))


def test_a_url_the_domain_maps_is_bound_to_it_and_cannot_be_deleted(deployed: Account) -> None:
    client = _client(deployed)
    listed = client.call_json("ListTriggers", {"Namespace": NAMESPACE, "FunctionName": USERS_ME})
    (url,) = listed["Response"]["Triggers"]
    assert json.loads(url["BoundResources"]) == [
        {"domain": "api.example.com", "PathMatch": "/users/me"}
    ]

    with pytest.raises(TencentCloudSDKException) as refused:
        client.call_json("DeleteTrigger", {**URL, "TriggerName": url["TriggerName"]})
    assert refused.value.get_code() == "FailedOperation.DeleteTrigger.UrlUsed"
    assert "api.example.com/users/me" in (refused.value.get_message() or "")
    assert len(deployed.scf.triggers[NAMESPACE, USERS_ME]) == 1
    deployed.cloud.refused.clear()  # refused on purpose: the fixture checks for none


def test_a_function_that_loses_its_url_has_it_removed_after_the_domain_update(
    deployed: Account,
) -> None:
    def edit(data: dict[str, Any]) -> None:
        data["functions"]["users-me"] = {}

    config = deployed.edited_config(edit)
    plan = deployed.deploy("plan", config=config)
    assert plan.code == 0, plan.output
    users_me = f"{NAMESPACE}/{USERS_ME}:$LATEST"
    assert plan.changes == [
        f"~ update domain api.example.com path /users/me: {users_me} -> (none)",
        f"- remove function-url {USERS_ME}",
    ]
    assert plan.last == f"plan: 0 to create, 2 to update, {RESOURCES - 2} unchanged"

    apply = deployed.deploy("apply", config=config)
    assert apply.code == 0, apply.output
    assert apply.changes == plan.changes
    assert [(c.action, c.params.get("FunctionName", "")) for c in deployed.scf.writes()] == [
        ("UpdateCustomDomain", ""),
        ("DeleteTrigger", USERS_ME),
    ]
    assert deployed.scf.triggers[NAMESPACE, USERS_ME] == []
    paths = [e["PathMatch"] for e in deployed.scf.domains["api.example.com"]["EndpointsConfig"]]
    assert "/users/me" not in paths
    again = deployed.deploy("plan", config=config)
    assert again.last == f"plan: 0 to create, 0 to update, {RESOURCES - 1} unchanged", again.output
