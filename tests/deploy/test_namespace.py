"""Each stage deploys into a namespace of its own, `<app>-<stage>` unless SCF_NAMESPACE names
one, created by the deploy when missing (SCF tells each function its own: SCF_NAMESPACE is
SCF's, and a file may not set it). A stage
deployed before into another namespace is left there, running, and named by every plan and
apply until it is deleted by hand."""

from __future__ import annotations

from typing import Any

from infra.manifest import load
from tests.deploy.conftest import NAMESPACE, PREFIX, Account
from tests.deploy.test_deploy import FUNCTIONS, RESOURCES


def _environment(account: Account, namespace: str, name: str) -> dict[str, str]:
    fn = account.scf.functions[namespace, PREFIX + name]
    return {v["Key"]: v["Value"] for v in fn["Environment"]["Variables"]}


def test_a_plan_names_the_namespace_it_would_create_and_writes_nothing(account: Account) -> None:
    result = account.deploy("plan")

    assert result.code == 0, result.output
    assert result.lines[0] == f"+ create namespace {NAMESPACE}"
    assert list(account.scf.namespaces) == ["default"]
    assert account.scf.writes() == []


def test_the_namespace_is_made_once_and_two_stages_share_a_region(account: Account) -> None:
    assert account.deploy("apply").code == 0
    assert account.deploy("apply").code == 0
    made = [c.params for c in account.scf.writes() if c.action == "CreateNamespace"]
    assert made == [{"Namespace": NAMESPACE}]

    staging = {**account.environ, "STAGE": "staging", "API_DOMAIN": "staging.example.com"}
    result = account.deploy("apply", environ=staging)

    assert result.code == 0, result.output
    assert result.lines[0] == "+ create namespace ai-platform-staging"
    assert sorted(account.scf.namespaces) == ["ai-platform-staging", NAMESPACE, "default"]
    for namespace in (NAMESPACE, "ai-platform-staging"):
        held = [key for key in account.scf.functions if key[0] == namespace]
        assert len(held) == len(FUNCTIONS)
    assert not [key for key in account.scf.functions if key[0] == "default"]
    # Neither stage names the other's functions: they are not left behind.
    assert not [line for line in result.lines if line.startswith("> left")]
    assert account.cloud.refused == []


def test_an_operator_names_the_namespace_and_everything_is_deployed_there(
    account: Account,
) -> None:
    environ = {**account.environ, "SCF_NAMESPACE": "default"}
    result = account.deploy("apply", environ=environ)

    assert result.code == 0, result.output
    assert [c for c in account.scf.writes() if c.action == "CreateNamespace"] == []
    assert list(account.scf.namespaces) == ["default"]
    for name in FUNCTIONS:  # SCF sets the function's own SCF_NAMESPACE; the deploy never does
        assert "SCF_NAMESPACE" not in _environment(account, "default", name)
    domain = account.scf.domains["api.example.com"]
    assert {e["Namespace"] for e in domain["EndpointsConfig"]} == {"default"}
    again = account.deploy("plan", environ=environ)
    assert again.last == f"plan: 0 to create, 0 to update, {RESOURCES} unchanged"


def test_a_namespace_scf_refuses_stops_before_any_call(account: Account) -> None:
    long_stage = {**account.environ, "STAGE": "s" * 19}  # ai-platform-<19>: 31 characters
    result = account.deploy("apply", environ=long_stage)
    assert result.code == 2
    assert "SCF refuses the namespace name 'ai-platform-sssssssssssssssssss'" in result.output

    named = {**account.environ, "SCF_NAMESPACE": "ai.platform"}
    assert account.deploy("plan", environ=named).code == 2
    assert account.scf.calls() == []


def test_a_file_that_sets_a_variable_scf_reserves_is_refused(account: Account) -> None:
    # SCF sets SCF_NAMESPACE (and every SCF_ variable) itself, and refuses a function that does.
    def edit(data: dict[str, Any]) -> None:
        data["defaults"]["environment"]["SCF_NAMESPACE"] = "default"

    result = account.deploy("apply", config=account.edited_config(edit))

    assert result.code == 2
    assert "SCF reserves SCF_NAMESPACE" in result.output
    assert account.scf.calls() == []


def test_the_file_gives_each_stage_its_own_namespace_unless_one_is_named() -> None:
    from infra.manifest import Variables

    prod = load(variables=Variables({"STAGE": "prod"}, deployed_names=True))
    assert prod.namespace == "ai-platform-prod"
    assert not [spec for spec in prod.functions.values() if "SCF_NAMESPACE" in spec.environment]
    named = load(variables=Variables({"STAGE": "prod", "SCF_NAMESPACE": "default"}))
    assert named.namespace == "default"


def test_a_stage_deployed_in_default_before_is_moved_and_what_is_left_named(
    account: Account,
) -> None:
    before = {**account.environ, "SCF_NAMESPACE": "default"}
    assert account.deploy("apply", environ=before).code == 0
    account.cloud.calls.clear()

    plan = account.deploy("plan")
    left = [line for line in plan.lines if line.startswith("> left")]
    assert left == [
        f"> left in namespace default: function {PREFIX}{name}, still running; delete it"
        f" once the stage is deployed in {NAMESPACE}"
        for name in sorted(FUNCTIONS)
    ]
    assert plan.code == 0
    users_me = f"{PREFIX}users-me:$LATEST"
    path = f"~ update domain api.example.com path /users/me: default/{users_me}"
    assert f"{path} -> {NAMESPACE}/{users_me}" in plan.lines
    assert account.scf.writes() == []

    result = account.deploy("apply")

    assert result.code == 0, result.output
    assert [line for line in result.lines if line.startswith("> left")] == left
    # The old functions are untouched; the new stage is whole; the domain serves it.
    assert not [c for c in account.scf.writes() if c.params.get("Namespace") == "default"]
    assert len([key for key in account.scf.functions if key[0] == NAMESPACE]) == len(FUNCTIONS)
    assert len([key for key in account.scf.functions if key[0] == "default"]) == len(FUNCTIONS)
    domain = account.scf.domains["api.example.com"]
    assert {e["Namespace"] for e in domain["EndpointsConfig"]} == {NAMESPACE}

    for name in FUNCTIONS:  # what the README tells the operator to do next
        del account.scf.functions["default", PREFIX + name]
    final = account.deploy("plan")
    assert not [line for line in final.lines if line.startswith("> left")]
    assert final.last == f"plan: 0 to create, 0 to update, {RESOURCES} unchanged"
