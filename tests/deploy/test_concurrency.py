"""`max_instances` in serverless.yml becomes the function's reserved concurrency in SCF,
`max_instances x memory` MB: the plan names a reservation that differs, the apply puts it,
and a second deploy finds nothing to do; a memory change moves the MB with it. A function
without the key is left as it is, a reservation made by hand included. A `max_instances`
that is no positive whole number, and reservations over what the region's quota allows,
stop the deploy before any write."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from tencentcloud.common import credential
from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException
from tencentcloud.common.profile.client_profile import ClientProfile
from tencentcloud.common.profile.http_profile import HttpProfile
from tencentcloud.scf.v20180416.scf_client import ScfClient

from infra.manifest import load
from tests.deploy.conftest import NAMESPACE, PREFIX, Account

MANIFEST = load()
CAPS = {
    name: spec.max_instances * spec.memory_mb
    for name, spec in MANIFEST.functions.items()
    if spec.max_instances is not None
}


def _puts(account: Account) -> dict[str, int]:
    puts = [c.params for c in account.scf.writes() if c.action == "PutReservedConcurrencyConfig"]
    assert {p["Namespace"] for p in puts} <= {NAMESPACE}
    return {p["FunctionName"].removeprefix(PREFIX): p["ReservedConcurrencyMem"] for p in puts}


def _concurrency_lines(lines: list[str]) -> list[str]:
    return [line for line in lines if " concurrency " in line]


def test_serverless_yml_caps_the_public_endpoints_and_not_payments_or_the_worker() -> None:
    for name in ("health", "auth-sms-code", "auth-login", "auth-register"):
        assert name in CAPS
    for name in ("auth-wechat-login", "auth-refresh"):
        assert name in CAPS
    for name in ("payments-wechat-notify", "payments-alipay-notify", "pipeline-worker"):
        assert name not in CAPS


def test_apply_reserves_max_instances_times_memory_and_a_second_deploy_changes_nothing(
    account: Account,
) -> None:
    plan = account.deploy("plan")
    assert f"+ create concurrency {PREFIX}health (at most 5 instances: 1280 MB (5 x 256 MB))" in (
        plan.lines
    )
    assert len(_concurrency_lines(plan.lines)) == len(CAPS)
    assert account.scf.writes() == []

    result = account.deploy("apply")

    assert result.code == 0, result.output
    assert _puts(account) == CAPS
    assert {name.removeprefix(PREFIX): mb for (_, name), mb in account.scf.reserved.items()} == (
        CAPS
    )
    account.cloud.calls.clear()
    again = account.deploy("plan")
    assert _concurrency_lines(again.lines) == []
    assert account.deploy("apply").code == 0
    assert _puts(account) == {}
    assert account.cloud.refused == []


def test_a_changed_cap_updates_that_reservation_only(deployed: Account) -> None:
    def edit(data: dict[str, Any]) -> None:
        data["functions"]["health"]["max_instances"] = 8

    config = deployed.edited_config(edit)
    plan = deployed.deploy("plan", config=config)
    assert plan.code == 0, plan.output
    assert plan.changes == [
        f"~ update concurrency {PREFIX}health reserved: 1280 MB -> 2048 MB (8 x 256 MB)"
    ]
    assert deployed.scf.writes() == []

    assert deployed.deploy("apply", config=config).code == 0
    assert [c.action for c in deployed.scf.writes()] == ["PutReservedConcurrencyConfig"]
    assert _puts(deployed) == {"health": 2048}
    assert deployed.scf.reserved[NAMESPACE, PREFIX + "health"] == 2048
    assert _concurrency_lines(deployed.deploy("plan", config=config).lines) == []


def test_a_memory_change_moves_the_reserved_memory_after_the_function(deployed: Account) -> None:
    def edit(data: dict[str, Any]) -> None:
        data["functions"]["auth-login"]["memory"] = 512

    config = deployed.edited_config(edit)
    plan = deployed.deploy("plan", config=config)
    assert plan.changes == [
        f"~ update function {PREFIX}auth-login memory: 256 -> 512",
        f"~ update concurrency {PREFIX}auth-login reserved: 5120 MB -> 10240 MB (20 x 512 MB)",
    ]

    assert deployed.deploy("apply", config=config).code == 0
    assert [(c.action, c.params["FunctionName"]) for c in deployed.scf.writes()] == [
        ("UpdateFunctionConfiguration", PREFIX + "auth-login"),
        ("PutReservedConcurrencyConfig", PREFIX + "auth-login"),
    ]
    assert _puts(deployed) == {"auth-login": 10240}
    assert deployed.deploy("plan", config=config).changes == []


def test_a_function_without_max_instances_keeps_the_reservation_it_has(
    deployed: Account,
) -> None:
    deployed.scf.reserved[NAMESPACE, PREFIX + "users-me"] = 1024  # set by hand

    def edit(data: dict[str, Any]) -> None:
        data["functions"]["health"].pop("max_instances")

    config = deployed.edited_config(edit)
    plan = deployed.deploy("plan", config=config)
    assert plan.code == 0, plan.output
    assert plan.changes == []
    assert deployed.deploy("apply", config=config).code == 0
    assert deployed.scf.writes() == []
    assert deployed.scf.reserved[NAMESPACE, PREFIX + "users-me"] == 1024
    assert deployed.scf.reserved[NAMESPACE, PREFIX + "health"] == 1280


@pytest.mark.parametrize("value", [0, -3, 2.5, "5", True])
def test_a_max_instances_that_is_no_positive_whole_number_stops_before_any_call(
    account: Account, value: object
) -> None:
    def edit(data: dict[str, Any]) -> None:
        data["functions"]["auth-login"]["max_instances"] = value

    config = account.edited_config(edit)
    for command in ("plan", "apply"):
        result = account.deploy(command, config=config)
        assert result.code == 2, result.output
        assert result.lines == [
            f"deploy: function 'auth-login': max_instances {value!r} is not a positive whole number"
        ]
    assert account.scf.calls() == []


def test_reservations_over_the_region_quota_stop_before_any_write(deployed: Account) -> None:
    # 115200 MB may be reserved in ap-guangzhou (128000 less 12800): the other caps and 400
    # x 256 MB pass it.
    def edit(data: dict[str, Any]) -> None:
        data["functions"]["auth-refresh"]["max_instances"] = 400

    config = deployed.edited_config(edit)
    total = sum(CAPS.values()) - CAPS["auth-refresh"] + 400 * 256
    plan = deployed.deploy("plan", config=config)

    assert plan.code == 2, plan.output
    (blocker,) = [line for line in plan.lines if line.startswith("! ")]
    assert blocker.startswith(
        f"! reserved concurrency in namespace {NAMESPACE} would total {total} MB, over the"
        " 115200 MB SCF allows in ap-guangzhou (its 128000 MB quota less 12800 MB kept for"
        " unreserved functions): "
    )
    assert f"{PREFIX}auth-refresh 102400 MB (400 x 256 MB)" in blocker
    assert f"{PREFIX}health 1280 MB (5 x 256 MB)" in blocker
    assert blocker.endswith("; lower max_instances in serverless.yml, or a reservation not from it")

    result = deployed.deploy("apply", config=config)
    assert result.code == 2, result.output
    assert result.last == "apply: stopped before any write"
    assert deployed.scf.writes() == []


def test_reservations_lowered_are_put_before_those_raised(deployed: Account) -> None:
    # auth-refresh holds 300 x 256 MB and goes back to its 30; health goes from 5 to 300.
    # Both fit after the deploy (104960 MB), but health, first in serverless.yml, raised
    # while auth-refresh still held its 76800 MB would total 174080: SCF refuses that Put.
    deployed.scf.reserved[NAMESPACE, PREFIX + "auth-refresh"] = 300 * 256

    def edit(data: dict[str, Any]) -> None:
        data["functions"]["health"]["max_instances"] = 300

    result = deployed.deploy("apply", config=deployed.edited_config(edit))

    assert result.code == 0, result.output
    assert list(_puts(deployed)) == ["auth-refresh", "health"]
    assert deployed.scf.reserved[NAMESPACE, PREFIX + "health"] == 300 * 256
    assert deployed.scf.reserved[NAMESPACE, PREFIX + "auth-refresh"] == CAPS["auth-refresh"]
    assert deployed.cloud.refused == []


def test_a_reservation_made_by_hand_counts_toward_the_quota(deployed: Account) -> None:
    room = 115200 - sum(CAPS.values())
    deployed.scf.reserved[NAMESPACE, PREFIX + "users-me"] = room + 256

    plan = deployed.deploy("plan")

    assert plan.code == 2, plan.output
    (blocker,) = [line for line in plan.lines if line.startswith("! ")]
    assert f"would total {115200 + 256} MB" in blocker
    assert f"{PREFIX}users-me {room + 256} MB (not from serverless.yml)" in blocker
    assert deployed.deploy("apply").code == 2
    assert deployed.scf.writes() == []

    deployed.scf.reserved[NAMESPACE, PREFIX + "users-me"] = room  # exactly at the most
    assert deployed.deploy("plan").code == 0


def test_a_smaller_region_allows_less(account: Account) -> None:
    # 64000 MB outside the five large regions: 51200 may be reserved.
    def edit(data: dict[str, Any]) -> None:
        data["functions"]["auth-refresh"]["max_instances"] = 120

    config = account.edited_config(edit)
    environ = {**account.environ, "TENCENTCLOUD_REGION": "ap-singapore"}
    plan = account.deploy("plan", config=config, environ=environ)
    assert plan.code == 2, plan.output
    assert "over the 51200 MB SCF allows in ap-singapore (its 64000 MB quota" in plan.output
    assert account.deploy("plan", config=config).code == 0  # ap-guangzhou


# ------------------------------------------------------------ the fake, as the API answers


@pytest.fixture
def client(deployed: Account) -> Iterator[ScfClient]:
    cloud = deployed.cloud
    http = HttpProfile(protocol="http", endpoint=cloud.endpoint)
    cred = credential.Credential(cloud.secret_id, cloud.secret_key)
    yield ScfClient(cred, "ap-guangzhou", ClientProfile(httpProfile=http))
    cloud.refused.clear()


def _code(client: ScfClient, action: str, **params: Any) -> str:
    with pytest.raises(TencentCloudSDKException) as refused:
        client.call_json(action, params)
    return str(refused.value.get_code())


def test_the_fake_puts_gets_and_deletes_a_reservation(client: ScfClient) -> None:
    where = {"FunctionName": PREFIX + "users-me", "Namespace": NAMESPACE}
    get = "GetReservedConcurrencyConfig"
    assert client.call_json(get, where)["Response"]["ReservedMem"] is None
    client.call_json("PutReservedConcurrencyConfig", {**where, "ReservedConcurrencyMem": 512})
    assert client.call_json(get, where)["Response"]["ReservedMem"] == 512
    client.call_json("DeleteReservedConcurrencyConfig", where)
    assert client.call_json(get, where)["Response"]["ReservedMem"] is None

    put = "PutReservedConcurrencyConfig"
    assert _code(client, put, **where, ReservedConcurrencyMem=115200 + 256) == (
        "FailedOperation.ReservedExceedTotal"
    )
    assert _code(client, put, **where, ReservedMem=512) == "UnknownParameter"
    assert _code(client, put, **where) == "MissingParameter"
    assert _code(client, put, **where, ReservedConcurrencyMem="512") == "InvalidParameter"
    assert _code(client, get, FunctionName=PREFIX + "nothing", Namespace=NAMESPACE) == (
        "ResourceNotFound.Function"
    )
