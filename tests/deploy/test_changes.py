"""A deployed account, then one change to serverless.yml or to a package: the plan names it
and only it, and the apply writes only what it names. And the ways a deploy stops: a
variable missing (before any call), an API error (with its code, and what was done before
it), a change SCF cannot make (before any write), db-migrate raising or its call failing."""

from __future__ import annotations

import json
import secrets
import shutil
import zipfile
from pathlib import Path
from typing import Any

import pytest

from infra.deploy.plan import MASK
from infra.manifest import load
from tests.deploy.conftest import NAMESPACE, PREFIX, Account, Result, write_layer
from tests.deploy.test_deploy import RESOURCES

FUNCTIONS = list(load().functions)
LAYER_1 = "layer ai-platform-app:1"


def _layer_done(result: Result) -> str:
    """The new layer's line, as a failure report lists it among the changes made."""
    (line,) = [line for line in result.lines if line.startswith("+ create layer ai-platform-app (")]
    return f"  {line}"


NAMESPACE_DONE = f"  + create namespace {NAMESPACE}"


def _writes(account: Account) -> list[tuple[str, str]]:
    return [(c.action, c.params.get("FunctionName", "")) for c in account.scf.writes()]


def test_a_memory_change_updates_that_function_only(deployed: Account) -> None:
    def edit(data: dict[str, Any]) -> None:
        data["functions"]["users-me"] = {"http": True, "memory": 512}

    config = deployed.edited_config(edit)
    plan = deployed.deploy("plan", config=config)
    assert plan.code == 0, plan.output
    assert plan.changes == [f"~ update function {PREFIX}users-me memory: 256 -> 512"]
    assert plan.last == f"plan: 0 to create, 1 to update, {RESOURCES - 1} unchanged"
    assert _writes(deployed) == []

    apply = deployed.deploy("apply", config=config)
    assert apply.code == 0, apply.output
    assert _writes(deployed) == [("UpdateFunctionConfiguration", PREFIX + "users-me")]
    (call,) = deployed.scf.writes()
    assert call.params["MemorySize"] == 512
    assert deployed.scf.functions[NAMESPACE, PREFIX + "users-me"]["MemorySize"] == 512
    assert deployed.deploy("plan", config=config).last.startswith("plan: 0 to create, 0 to update")


def test_a_changed_timer_is_updated_in_place_and_a_dropped_one_removed(
    deployed: Account,
) -> None:
    def edit(data: dict[str, Any]) -> None:
        data["functions"]["saga-sweeper"]["timers"][0]["cron"] = "0 */5 * * * * *"
        data["functions"]["invite-refill"].pop("timers")

    config = deployed.edited_config(edit)
    plan = deployed.deploy("plan", config=config)
    cron = "cron: 0 */1 * * * * * -> 0 */5 * * * * *"
    assert plan.changes == [
        f"~ update timer {PREFIX}saga-sweeper/saga-sweeper {cron}",
        f"- remove timer {PREFIX}invite-refill/invite-refill",
    ]
    assert plan.last == f"plan: 0 to create, 2 to update, {RESOURCES - 2} unchanged"

    assert deployed.deploy("apply", config=config).code == 0
    assert _writes(deployed) == [
        ("UpdateTrigger", PREFIX + "saga-sweeper"),
        ("DeleteTrigger", PREFIX + "invite-refill"),
    ]
    (timer,) = deployed.scf.triggers[NAMESPACE, PREFIX + "saga-sweeper"]
    assert timer["TriggerDesc"] == '{"cron": "0 */5 * * * * *"}'
    assert deployed.scf.triggers[NAMESPACE, PREFIX + "invite-refill"] == []


def test_new_layer_content_is_a_new_version_every_function_moves_to(
    deployed: Account, tmp_path: Path
) -> None:
    dist = tmp_path / "dist"
    shutil.copytree(deployed.dist, dist)
    write_layer(dist / "layer" / "layer.zip", marker="2")

    plan = deployed.deploy("plan", dist=dist)
    assert plan.changes[0].startswith("+ create layer ai-platform-app (content sha256 ")
    assert (
        f"~ update function {PREFIX}health layers: ai-platform-app:1 -> ai-platform-app:(new)"
        in (plan.lines)
    )
    unchanged = RESOURCES - 1 - len(FUNCTIONS)
    assert plan.last == f"plan: 1 to create, {len(FUNCTIONS)} to update, {unchanged} unchanged"

    assert deployed.deploy("apply", dist=dist).code == 0
    actions = [action for action, _ in _writes(deployed)]
    assert actions == ["PublishLayerVersion"] + ["UpdateFunctionConfiguration"] * len(FUNCTIONS)
    for call in deployed.scf.writes()[1:]:
        assert call.params["Layers"] == [{"LayerName": "ai-platform-app", "LayerVersion": 2}]
    assert len(deployed.objects()) == 2

    # The first content again: its version is found by its hash, nothing is published.
    deployed.cloud.calls.clear()
    again = deployed.deploy("apply")
    assert again.code == 0, again.output
    assert [action for action, _ in _writes(deployed)] == ["UpdateFunctionConfiguration"] * len(
        FUNCTIONS
    )
    assert deployed.scf.writes()[0].params["Layers"][0]["LayerVersion"] == 1


def test_new_code_in_one_function_updates_its_code_and_description(
    deployed: Account, tmp_path: Path
) -> None:
    dist = tmp_path / "dist"
    shutil.copytree(deployed.dist, dist)
    (dist / "functions" / "health.zip").write_bytes((dist / "functions" / "docs.zip").read_bytes())

    plan = deployed.deploy("plan", dist=dist)
    (change,) = plan.changes
    assert change.startswith(f"~ update function {PREFIX}health code: ")
    assert deployed.deploy("apply", dist=dist).code == 0
    assert _writes(deployed) == [
        ("UpdateFunctionCode", PREFIX + "health"),
        ("UpdateFunctionConfiguration", PREFIX + "health"),
    ]
    assert deployed.deploy("plan", dist=dist).last.endswith(f"{RESOURCES} unchanged")


def test_a_changed_secret_is_masked_in_the_plan(deployed: Account) -> None:
    environ = {**deployed.environ, "JWT_SECRET": "rotated-" + secrets.token_urlsafe(64)}
    plan = deployed.deploy("plan", environ=environ)
    line = f"~ update function {PREFIX}health environment.JWT_SECRET: {MASK} -> {MASK}"
    assert line in plan.lines
    assert "rotated-" not in plan.output and deployed.environ["JWT_SECRET"] not in plan.output
    unchanged = RESOURCES - len(FUNCTIONS)
    assert plan.last == f"plan: 0 to create, {len(FUNCTIONS)} to update, {unchanged} unchanged"


def test_a_runtime_change_stops_the_apply_before_any_write(
    deployed: Account, tmp_path: Path
) -> None:
    def edit(data: dict[str, Any]) -> None:
        data["functions"]["users-me"] = {"http": True, "runtime": "Python3.9", "memory": 512}
        data["functions"]["health"]["memory"] = 512

    config = deployed.edited_config(edit)
    dist = tmp_path / "dist"  # a layer for both runtimes, as a package for both would be
    shutil.copytree(deployed.dist, dist)
    write_layer(dist / "layer" / "layer.zip", bytecode_tags=("cpython-310", "cpython-39"))
    plan = deployed.deploy("plan", config=config, dist=dist)
    assert plan.code == 2
    assert f"! function {PREFIX}users-me runtime: Python3.10 -> Python3.9: SCF cannot" in (
        plan.output
    )
    apply = deployed.deploy("apply", config=config, dist=dist)
    assert apply.code == 2
    assert apply.last == "apply: stopped before any write"
    assert _writes(deployed) == []


def test_an_idle_timeout_change_updates_the_web_function_in_place(deployed: Account) -> None:
    def edit(data: dict[str, Any]) -> None:
        data["functions"]["ws"]["web"]["websocket"]["idle_timeout_s"] = 300

    config = deployed.edited_config(edit)
    plan = deployed.deploy("plan", config=config)
    assert plan.code == 0, plan.output
    assert plan.changes == [f"~ update function {PREFIX}ws idle timeout: 120 -> 300"]
    assert plan.last == f"plan: 0 to create, 1 to update, {RESOURCES - 1} unchanged"

    apply = deployed.deploy("apply", config=config)
    assert apply.code == 0, apply.output
    assert _writes(deployed) == [("UpdateFunctionConfiguration", PREFIX + "ws")]
    (call,) = deployed.scf.writes()
    assert call.params["ProtocolParams"] == {"WSParams": {"IdleTimeOut": 300}}
    assert deployed.scf.functions[NAMESPACE, PREFIX + "ws"]["ProtocolParams"]["WSParams"] == {
        "IdleTimeOut": 300
    }
    assert deployed.deploy("plan", config=config).last.endswith(f"{RESOURCES} unchanged")


def test_a_web_function_cannot_become_an_event_function(deployed: Account) -> None:
    def edit(data: dict[str, Any]) -> None:
        data["functions"]["ws"].pop("web")
        data["functions"]["ws"]["handler"] = "index.app"

    plan = deployed.deploy("plan", config=deployed.edited_config(edit))
    assert plan.code == 2
    assert f"! function {PREFIX}ws kind: HTTP WS -> Event: SCF cannot change" in plan.output
    assert _writes(deployed) == []


def test_a_missing_variable_stops_before_any_call_naming_every_one(account: Account) -> None:
    environ = dict(account.environ)
    for name in ("JWT_SECRET", "VPC_ID", "TENCENTCLOUD_REGION"):
        environ.pop(name)
    environ["API_DOMAIN"] = ""

    for command in ("plan", "apply"):
        result = account.deploy(command, environ=environ)
        assert result.code == 2
        assert result.lines == [
            "deploy: not set: API_DOMAIN, JWT_SECRET, TENCENTCLOUD_REGION, VPC_ID"
        ]
    assert account.cloud.calls == [] and account.cloud.refused == []
    assert account.objects() == []


def test_an_api_error_stops_the_apply_with_its_code_and_what_was_done(account: Account) -> None:
    account.scf.fail_next("CreateTrigger", "LimitExceeded.Trigger", "too many triggers")

    failed = account.deploy("apply")
    assert failed.code == 1
    assert failed.lines[-7:] == [
        "error: CreateTrigger: LimitExceeded.Trigger: too many triggers",
        "done before the failure (4 changes):",
        NAMESPACE_DONE,
        _layer_done(failed),
        f"  + create function {PREFIX}db-migrate (Python3.10, 256 MB, 300 s, {LAYER_1})",
        f"  + create function {PREFIX}health (Python3.10, 256 MB, 10 s, {LAYER_1})",
        f"not done: + create function-url {PREFIX}health (auth NONE, internet)",
    ]
    assert [c.action for c in account.scf.calls()].count("Invoke") == 1

    # What was done stays done: the next apply makes the rest.
    account.cloud.calls.clear()
    resumed = account.deploy("apply")
    assert resumed.code == 0, resumed.output
    assert f"apply: {RESOURCES - 4} created, 0 updated, 4 unchanged" in resumed.lines
    assert ("PublishLayerVersion", "") not in _writes(account)


def test_a_failed_read_after_a_change_reports_that_change_done(account: Account) -> None:
    account.scf.fail_next("ListTriggers", "InternalError", "try again")

    failed = account.deploy("apply")
    assert failed.code == 1
    assert failed.lines[-5:] == [
        "error: ListTriggers: InternalError: try again",
        "done before the failure (3 changes):",
        NAMESPACE_DONE,
        _layer_done(failed),
        f"  + create function {PREFIX}db-migrate (Python3.10, 256 MB, 300 s, {LAYER_1})",
    ]
    assert (NAMESPACE, PREFIX + "db-migrate") in account.scf.functions


def test_db_migrate_runs_before_any_other_function_is_created(account: Account) -> None:
    result = account.deploy("apply")
    assert result.code == 0, result.output
    actions = [(c.action, c.params.get("FunctionName", "")) for c in account.scf.calls()]
    invoke = actions.index(("Invoke", PREFIX + "db-migrate"))
    first_other = next(
        i
        for i, (action, name) in enumerate(actions)
        if action == "CreateFunction" and name != PREFIX + "db-migrate"
    )
    assert actions.index(("CreateFunction", PREFIX + "db-migrate")) < invoke < first_other
    head = result.lines.index(
        f"+ create function {PREFIX}health (Python3.10, 256 MB, 10 s, {LAYER_1})"
    )
    assert result.lines[head - 1].startswith(f"invoke {PREFIX}db-migrate: ")


def _refuse(*_args: Any) -> Any:
    raise RuntimeError("another migration run holds the lock; try again later")


@pytest.mark.parametrize(
    "failure",
    [
        # The function raising: its message.
        f"{PREFIX}db-migrate failed: another migration run holds the lock; try again later",
        # The Invoke call itself failing (SCF's error, the request timing out): whether the
        # migration ran is not known, and nothing else may change either.
        f"{PREFIX}db-migrate gave no answer, so whether it ran is not known:"
        " Invoke: InternalError: try again",
    ],
)
def test_db_migrate_failing_stops_the_deploy_before_the_other_functions(
    deployed: Account, tmp_path: Path, failure: str
) -> None:
    dist = tmp_path / "dist"
    shutil.copytree(deployed.dist, dist)
    write_layer(dist / "layer" / "layer.zip", marker="2")
    if "no answer" in failure:
        deployed.scf.fail_next("Invoke", "InternalError", "try again")
    else:
        deployed.scf.run_with(PREFIX + "db-migrate", _refuse)

    result = deployed.deploy("apply", dist=dist)
    assert result.code == 1
    assert result.lines[-5:] == [
        f"error: {failure}",
        "done before the failure (2 changes):",
        _layer_done(result),
        f"  ~ update function {PREFIX}db-migrate layers: ai-platform-app:1 -> ai-platform-app:2",
        "not done: the other functions and the domain (still as they were)",
    ]
    # Every other function still runs the layer its code was deployed with.
    assert _writes(deployed) == [
        ("PublishLayerVersion", ""),
        ("UpdateFunctionConfiguration", PREFIX + "db-migrate"),
    ]
    for name in FUNCTIONS:
        layers = deployed.scf.functions[NAMESPACE, PREFIX + name]["Layers"]
        assert layers[0]["LayerVersion"] == (2 if name == "db-migrate" else 1)


def test_changes_made_by_hand_are_put_back(deployed: Account) -> None:
    scf = deployed.scf
    domain = scf.domains["api.example.com"]
    domain["EndpointsConfig"] = [
        e for e in domain["EndpointsConfig"] if e["PathMatch"] != "/users/me"
    ]
    (url,) = scf.triggers[NAMESPACE, PREFIX + "users-me"]
    url["Enable"] = 0
    scf.async_configs[NAMESPACE, PREFIX + "pipeline-worker"] = {
        "RetryConfig": [{"RetryNum": 0}],
        "MsgTTL": 600,
    }
    scf.functions[NAMESPACE, PREFIX + "health"]["Environment"]["Variables"].append(
        {"Key": "DEBUG", "Value": "1"}
    )

    plan = deployed.deploy("plan")
    users_me = f"{NAMESPACE}/{PREFIX}users-me:$LATEST"
    assert plan.changes == [
        f"~ update function {PREFIX}health environment.DEBUG: {MASK} -> (none)",
        f"~ update function-url {PREFIX}users-me enabled: False -> True",
        f"~ update async-config {PREFIX}pipeline-worker retries: 0 -> 2",
        f"~ update async-config {PREFIX}pipeline-worker ttl_s: 600 -> 21600",
        f"~ update domain api.example.com path /users/me: (none) -> {users_me}",
    ]
    assert plan.last == f"plan: 0 to create, 4 to update, {RESOURCES - 4} unchanged"

    assert deployed.deploy("apply").code == 0
    assert _writes(deployed) == [
        ("UpdateFunctionConfiguration", PREFIX + "health"),
        ("UpdateTrigger", PREFIX + "users-me"),
        ("UpdateFunctionEventInvokeConfig", PREFIX + "pipeline-worker"),
        ("UpdateCustomDomain", ""),
    ]
    assert deployed.deploy("plan").last == f"plan: 0 to create, 0 to update, {RESOURCES} unchanged"


def test_a_domain_turned_to_http_without_a_certificate_is_updated_once(
    deployed: Account,
) -> None:
    def edit(data: dict[str, Any]) -> None:
        data["domain"] = {"name": "api.example.com", "protocol": "HTTP"}

    config = deployed.edited_config(edit)
    plan = deployed.deploy("plan", config=config)
    assert plan.changes == ["~ update domain api.example.com protocol: HTTPS -> HTTP"]

    assert deployed.deploy("apply", config=config).code == 0
    assert _writes(deployed) == [("UpdateCustomDomain", "")]
    assert deployed.scf.domains["api.example.com"]["Protocol"] == "HTTP"
    # The certificate it had stays, unused: no deploy after this one writes anything.
    again = deployed.deploy("plan", config=config)
    assert again.last == f"plan: 0 to create, 0 to update, {RESOURCES} unchanged", again.output


@pytest.mark.parametrize(
    "separators", [(", ", ": "), (",", ":")], ids=["with spaces, as sent before", "compact"]
)
def test_a_function_url_is_compared_by_its_fields_not_its_text(
    deployed: Account, separators: tuple[str, str]
) -> None:
    (url,) = deployed.scf.triggers[NAMESPACE, PREFIX + "users-me"]
    desc = {"AuthType": "NONE", "NetConfig": {"EnableIntranet": False, "EnableExtranet": True}}
    url["TriggerDesc"] = json.dumps(desc, separators=separators)

    assert deployed.deploy("plan").last == f"plan: 0 to create, 0 to update, {RESOURCES} unchanged"


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda data: data["defaults"]["environment"].update(TENCENTCLOUD_REGION="x"),
            "health: SCF reserves TENCENTCLOUD_REGION",
        ),
        (
            lambda data: data["defaults"]["environment"].update(NOTES="x" * 4000),
            "over SCF's 4096",
        ),
        (lambda data: data["domain"].update(certificate_id=""), "HTTPS needs a certificate"),
        # Late in the file: SCF refused them with the layer, db-migrate and most functions
        # already changed.
        (
            lambda data: data["functions"]["order-reconcile"].update(memory=200),
            "order-reconcile: SCF refuses memory 200 MB",
        ),
        (
            lambda data: data["functions"]["cos-cleanup"].update(timeout=1200),
            "cos-cleanup: SCF refuses timeout 1200 s",
        ),
        (
            lambda data: data["defaults"].update(memory=3200),
            "health: SCF refuses memory 3200 MB",
        ),
        # Timers come after their function's own writes: SCF refused them with the function
        # and those before it already changed.
        (
            lambda data: data["functions"]["cos-cleanup"]["timers"][0].update(cron="0 0 19 * * *"),
            "cos-cleanup: SCF refuses timer cos-cleanup's cron '0 0 19 * * *' (6 fields",
        ),
        (
            lambda data: data["functions"]["cos-cleanup"]["timers"][0].update(
                cron="0 0 24 * * * *"
            ),
            "cos-cleanup: SCF refuses timer cos-cleanup's cron '0 0 24 * * * *' (hour 24",
        ),
        (
            lambda data: data["functions"]["cos-cleanup"]["timers"][0].update(name="1-cleanup"),
            "cos-cleanup: SCF refuses the timer name '1-cleanup'",
        ),
        (
            lambda data: data["functions"]["cos-cleanup"]["timers"][0].update(argument="x" * 4097),
            "cos-cleanup: timer cos-cleanup's argument takes 4097 bytes, over SCF's 4096",
        ),
    ],
)
def test_what_scf_would_refuse_halfway_stops_the_deploy_before_any_call(
    account: Account, edit: Any, message: str
) -> None:
    result = account.deploy("apply", config=account.edited_config(edit))
    assert result.code == 2
    assert result.last.startswith("deploy: ") and message in result.last
    assert account.cloud.calls == [] and account.cloud.refused == []


def test_a_cron_scf_refuses_leaves_the_timer_it_replaces_in_place(deployed: Account) -> None:
    """A cron SCF refuses is refused before any call: found only at the timer's
    UpdateTrigger, it would stop the deploy with the layer and functions changed."""

    def edit(data: dict[str, Any]) -> None:
        data["functions"]["saga-sweeper"]["timers"][0]["cron"] = "0 */5 * * * *"

    result = deployed.deploy("apply", config=deployed.edited_config(edit))
    assert result.code == 2, result.output
    assert "saga-sweeper: SCF refuses timer saga-sweeper's cron" in result.last
    assert deployed.scf.writes() == []
    (timer,) = deployed.scf.triggers[NAMESPACE, PREFIX + "saga-sweeper"]
    assert json.loads(timer["TriggerDesc"]) == {"cron": "0 */1 * * * * *"}


def test_a_stage_that_makes_a_function_name_scf_refuses_stops_before_any_call(
    account: Account,
) -> None:
    """`ai-platform-<STAGE>-payments-wechat-notify` past SCF's 60 characters: refused before
    the first call, not at that function's CreateFunction with half the account built."""
    # A namespace named, or `<app>-<STAGE>` is refused first (30 characters at most).
    environ = {
        **account.environ,
        "STAGE": "preview-feature-branch-1234",
        "SCF_NAMESPACE": "preview",
    }
    result = account.deploy("apply", environ=environ)
    assert result.code == 2, result.output
    assert "SCF refuses the function name" in result.output
    assert account.cloud.calls == []


def test_new_code_made_before_its_configuration_is_refused_is_reported_done(
    deployed: Account, tmp_path: Path
) -> None:
    """SCF takes code and configuration in two calls: when the second is refused, the
    function runs its new code, and the report says so rather than calling it not done."""

    def edit(data: dict[str, Any]) -> None:
        data["functions"]["health"]["memory"] = 512

    dist = tmp_path / "dist"
    shutil.copytree(deployed.dist, dist)
    (dist / "functions" / "health.zip").write_bytes((dist / "functions" / "docs.zip").read_bytes())
    deployed.scf.fail_next("UpdateFunctionConfiguration", "FailedOperation", "refused")

    result = deployed.deploy("apply", dist=dist, config=deployed.edited_config(edit))
    assert result.code == 1
    health = f"~ update function {PREFIX}health"
    (code,) = [line for line in result.lines if line.startswith(f"{health} code: ")]
    assert result.lines[-4:] == [
        "error: UpdateFunctionConfiguration: FailedOperation: refused",
        "done before the failure (1 changes):",
        f"  {code}",
        f"not done: {health} memory: 256 -> 512",
    ]
    assert _writes(deployed) == [
        ("UpdateFunctionCode", PREFIX + "health"),
        ("UpdateFunctionConfiguration", PREFIX + "health"),
    ]


def test_a_timer_change_scf_refuses_leaves_the_timer_as_it_was(deployed: Account) -> None:
    """Updated in place: a refusal leaves the old timer firing, where deleting it before
    creating it anew left the function with none until the next deploy."""

    def edit(data: dict[str, Any]) -> None:
        data["functions"]["saga-sweeper"]["timers"][0]["cron"] = "0 */5 * * * * *"

    deployed.scf.fail_next("CreateTrigger", "LimitExceeded.Trigger", "too many triggers")
    deployed.scf.fail_next("UpdateTrigger", "LimitExceeded.Trigger", "too many triggers")
    result = deployed.deploy("apply", config=deployed.edited_config(edit))
    assert result.code == 1, result.output
    cron = "cron: 0 */1 * * * * * -> 0 */5 * * * * *"
    assert result.lines[-3:] == [
        "error: UpdateTrigger: LimitExceeded.Trigger: too many triggers",
        "nothing was changed before the failure",
        f"not done: ~ update timer {PREFIX}saga-sweeper/saga-sweeper {cron}",
    ]
    (timer,) = deployed.scf.triggers[NAMESPACE, PREFIX + "saga-sweeper"]
    assert timer["TriggerDesc"] == '{"cron": "0 */1 * * * * *"}'

    assert deployed.deploy("apply", config=deployed.edited_config(edit)).code == 0
    (timer,) = deployed.scf.triggers[NAMESPACE, PREFIX + "saga-sweeper"]
    assert timer["TriggerDesc"] == '{"cron": "0 */5 * * * * *"}'


def test_a_layer_published_whose_wait_fails_is_reported_begun(account: Account) -> None:
    account.scf.fail_next("GetLayerVersion", "InternalError", "try again")

    failed = account.deploy("apply")
    assert failed.code == 1
    assert failed.lines[-4:] == [
        "error: GetLayerVersion: InternalError: try again",
        "done before the failure (1 changes):",
        NAMESPACE_DONE,
        "begun, not finished: " + failed.lines[1],
    ]
    assert failed.lines[1].startswith("+ create layer ai-platform-app")
    # SCF has the version: the next apply finds it by its content and publishes none.
    account.cloud.calls.clear()
    assert account.deploy("apply").code == 0
    assert ("PublishLayerVersion", "") not in _writes(account)


@pytest.mark.parametrize(("tag", "held"), [("cpython-311", "cpython-311"), (None, "none")])
def test_a_layer_without_bytecode_for_the_runtime_stops_the_deploy_before_any_call(
    account: Account, tmp_path: Path, tag: str | None, held: str
) -> None:
    dist = tmp_path / "dist"
    shutil.copytree(account.dist, dist)
    layer = dist / "layer" / "layer.zip"
    if tag is None:
        with zipfile.ZipFile(layer, "w") as archive:
            archive.writestr("app/__init__.py", "# no bytecode\n")
    else:
        write_layer(layer, bytecode_tags=(tag,))

    for command in ("plan", "apply"):
        result = account.deploy(command, dist=dist)
        assert result.code == 2
        assert result.last == (
            f"deploy: {layer}: no bytecode for Python3.10 (cpython-310; it holds {held}): "
            "run `make package`, which compiles it with that Python"
        )
    assert account.cloud.calls == [] and account.objects() == []
