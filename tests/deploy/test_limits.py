"""SCF's limits, checked in the plan before any write: a namespace holds 50 functions and a
region 5 namespaces. A deploy over either is a blocker naming the counts: the plan exits 2
and the apply stops before it publishes the layer, creates the namespace or touches a
function, where SCF would have refused part way through. Exactly at a limit deploys."""

from __future__ import annotations

from tests.deploy.conftest import NAMESPACE, PREFIX, Account
from tests.deploy.test_deploy import FUNCTIONS

LIMIT = 50


def _hold(account: Account, namespace: str, count: int) -> list[str]:
    """`count` functions not of serverless.yml in `namespace`, as another tool made them."""
    names = [f"other-{number:02d}" for number in range(count)]
    for name in names:
        account.scf.functions[namespace, name] = {
            "FunctionName": name,
            "Namespace": namespace,
            "Runtime": "Python3.10",
            "Type": "Event",
            "Status": "Active",
        }
        account.scf.triggers[namespace, name] = []
    return names


def _blockers(lines: list[str]) -> list[str]:
    return [line for line in lines if line.startswith("! namespace")]


def test_a_namespace_that_would_hold_51_functions_stops_before_any_write(
    account: Account,
) -> None:
    account.scf.add_namespace(NAMESPACE)
    others = _hold(account, NAMESPACE, LIMIT - len(FUNCTIONS) + 1)

    plan = account.deploy("plan")

    assert plan.code == 2, plan.output
    (blocker,) = _blockers(plan.lines)
    assert blocker == (
        f"! namespace {NAMESPACE} would hold 51 functions after this deploy, over SCF's 50:"
        f" it holds {len(others)}, {len(others)} of them not in serverless.yml"
        f" ({', '.join(others)}), and the deploy creates {len(FUNCTIONS)}; delete those not"
        " in serverless.yml, or name another namespace in SCF_NAMESPACE"
    )

    result = account.deploy("apply")

    assert result.code == 2, result.output
    assert blocker in result.lines
    assert result.last == "apply: stopped before any write"
    assert account.scf.writes() == []
    assert not account.scf.layers


def test_functions_already_there_count_once(deployed: Account) -> None:
    # One of ours gone (the deploy creates it again), the room it left taken by another's.
    del deployed.scf.functions[NAMESPACE, PREFIX + "health"]
    others = _hold(deployed, NAMESPACE, LIMIT - len(FUNCTIONS) + 1)

    plan = deployed.deploy("plan")

    assert plan.code == 2, plan.output
    (blocker,) = _blockers(plan.lines)
    assert "would hold 51 functions after this deploy, over SCF's 50: it holds 50," in blocker
    assert f"{len(others)} of them not in serverless.yml" in blocker
    assert "and the deploy creates 1;" in blocker
    assert deployed.deploy("apply").code == 2
    assert deployed.scf.writes() == []


def test_a_namespace_that_would_hold_exactly_50_functions_deploys(account: Account) -> None:
    account.scf.add_namespace(NAMESPACE)
    _hold(account, NAMESPACE, LIMIT - len(FUNCTIONS))

    assert account.deploy("plan").code == 0
    result = account.deploy("apply")

    assert result.code == 0, result.output
    assert len([key for key in account.scf.functions if key[0] == NAMESPACE]) == LIMIT
    assert account.cloud.refused == []


def test_a_sixth_namespace_stops_before_any_write(account: Account) -> None:
    for number in range(4):  # and `default`: the region's 5
        account.scf.add_namespace(f"ns{number}")

    plan = account.deploy("plan")

    assert plan.code == 2, plan.output
    assert _blockers(plan.lines) == [
        f"! namespace {NAMESPACE} cannot be created: the region has 5 namespaces (default, ns0,"
        " ns1, ns2, ns3), SCF's most is 5; delete one no stage uses, or name one of them in"
        " SCF_NAMESPACE"
    ]
    result = account.deploy("apply")
    assert result.code == 2, result.output
    assert account.scf.writes() == []
    assert NAMESPACE not in account.scf.namespaces


def test_the_fifth_namespace_is_created_and_a_full_region_takes_an_existing_one(
    account: Account,
) -> None:
    for number in range(3):
        account.scf.add_namespace(f"ns{number}")

    result = account.deploy("apply")

    assert result.code == 0, result.output
    assert len(account.scf.namespaces) == 5
    again = account.deploy("plan")  # the region is full, but the namespace is there
    assert again.code == 0, again.output
    assert _blockers(again.lines) == []
