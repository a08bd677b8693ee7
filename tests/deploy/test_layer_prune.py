"""An apply that has made every other change deletes the layer's old versions beyond the
newest ten (infra.deploy.layer KEPT_VERSIONS), but never one a function of any namespace
names, and its plan lists each deletion as it lists every other change."""

from __future__ import annotations

import base64
import io
import shutil
import zipfile
from pathlib import Path

from tests.deploy.conftest import Account, write_layer
from tests.deploy.test_url_removal import _client

LAYER = "ai-platform-app"
ELSEWHERE = "someone-else-fn"


def _versions(account: Account) -> list[int]:
    return [v["LayerVersion"] for v in account.scf.layers[LAYER]]


def _function_elsewhere(account: Account, version: int) -> None:
    """A function of the `default` namespace, not the stage's, on `version` of the layer."""
    data = io.BytesIO()
    with zipfile.ZipFile(data, "w") as archive:
        archive.writestr("index.py", "def main_handler(event, context):\n    return 1\n")
    _client(account).call_json(
        "CreateFunction",
        {
            "FunctionName": ELSEWHERE,
            "Namespace": "default",
            "Runtime": "Python3.10",
            "Handler": "index.main_handler",
            "Code": {"ZipFile": base64.b64encode(data.getvalue()).decode()},
            "Layers": [{"LayerName": LAYER, "LayerVersion": version}],
        },
    )


def test_old_versions_no_function_names_are_deleted_beyond_the_newest_ten(
    deployed: Account, tmp_path: Path
) -> None:
    # Versions 2-15 from earlier deploys; the stage's functions name 1, another's names 3.
    for number in range(2, 16):
        deployed.scf.publish_elsewhere(LAYER, f"an earlier build {number}")
    _function_elsewhere(deployed, 3)
    deployed.cloud.calls.clear()
    dist = tmp_path / "dist"
    shutil.copytree(deployed.dist, dist)
    write_layer(dist / "layer" / "layer.zip", marker="2")  # published as 16
    removals = [f"- remove layer version {LAYER}:{n}" for n in (1, 2, 4, 5, 6)]

    plan = deployed.deploy("plan", dist=dist)
    assert plan.code == 0, plan.output
    assert [line for line in plan.changes if line.startswith("- ")] == removals
    assert plan.changes[-len(removals) :] == removals  # after every other change
    assert deployed.scf.writes() == []

    apply = deployed.deploy("apply", dist=dist)
    assert apply.code == 0, apply.output
    assert apply.changes[-len(removals) :] == removals
    deletions = [c for c in deployed.scf.writes() if c.action == "DeleteLayerVersion"]
    assert [c.params["LayerVersion"] for c in deletions] == [1, 2, 4, 5, 6]
    assert deployed.scf.writes()[-len(deletions) :] == deletions
    assert sorted(_versions(deployed)) == [3, *range(7, 17)]

    deployed.cloud.calls.clear()
    again = deployed.deploy("apply", dist=dist)
    assert again.code == 0, again.output
    assert deployed.scf.writes() == []


def test_a_deploy_of_content_already_published_keeps_the_newest_ten_it_counts_in(
    deployed: Account,
) -> None:
    """No new version: the ten newest stay, the one the functions name among them or not."""
    for number in range(2, 13):
        deployed.scf.publish_elsewhere(LAYER, f"an earlier build {number}")
    deployed.cloud.calls.clear()

    plan = deployed.deploy("plan")
    assert plan.changes == [f"- remove layer version {LAYER}:2"]
    assert plan.last.startswith("plan: 0 to create, 1 to update, ")

    apply = deployed.deploy("apply")
    assert apply.code == 0, apply.output
    assert [(c.action, c.params) for c in deployed.scf.writes()] == [
        ("DeleteLayerVersion", {"LayerName": LAYER, "LayerVersion": 2})
    ]
    assert sorted(_versions(deployed)) == [1, *range(3, 13)]
