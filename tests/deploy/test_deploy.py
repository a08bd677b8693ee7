"""`python -m infra.deploy plan|apply` end to end, against an empty account (the fake SCF,
which checks every request against the official schema, and moto's S3 app as COS): a plan
writes nothing; an apply creates the layer, the functions, their Function URLs, timers and
async config and the custom domain with infra.routes' mapping, running db-migrate once its
function exists and before the others; after it, a plan finds nothing to do and an apply
writes nothing."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import zipfile
from collections import Counter
from typing import Any

from app.config.settings import Settings
from infra import routes
from infra.manifest import load
from tests.deploy.conftest import NAMESPACE, PREFIX, Account
from tests.support.functions import handler

MANIFEST = load()
FUNCTIONS = list(MANIFEST.functions)
HTTP = [spec.name for spec in MANIFEST.http_functions]
WEB = [spec.name for spec in MANIFEST.functions.values() if spec.web]
URLS = HTTP + WEB  # the functions with a Function URL
TIMERS = [(timer.function, timer.name, timer.cron) for timer in MANIFEST.timers]
CAPPED = [name for name, spec in MANIFEST.functions.items() if spec.max_instances is not None]
# The namespace, the layer, each function, each Function URL, timer and async config, each
# capped function's reserved concurrency, and the domain.
RESOURCES = 1 + 1 + len(FUNCTIONS) + len(URLS) + len(TIMERS) + 1 + len(CAPPED) + 1


def _head() -> str:
    from app.db.engine import get_engine
    from app.db.migrate import current_heads

    [head] = current_heads(get_engine())
    return head


def test_a_plan_of_an_empty_account_creates_everything_and_writes_nothing(
    account: Account,
) -> None:
    result = account.deploy("plan")

    assert result.code == 0, result.output
    assert result.last == f"plan: {RESOURCES} to create, 0 to update, 0 unchanged"
    assert "+ create layer ai-platform-app (content sha256 " in result.output
    for name in FUNCTIONS:
        assert f"+ create function {PREFIX}{name} (Python3.10, " in result.output
    migrate = result.lines.index(f"> invoke {PREFIX}db-migrate before the other functions")
    assert result.lines[migrate - 1].startswith(f"+ create function {PREFIX}db-migrate ")
    assert account.scf.writes() == []
    assert [c.action for c in account.scf.calls() if c.action == "Invoke"] == []
    assert account.objects() == []
    assert account.cloud.refused == []


def test_apply_builds_the_account_and_a_second_apply_writes_nothing(account: Account) -> None:
    result = account.deploy("apply")

    assert result.code == 0, result.output
    assert result.last == f"apply: {RESOURCES} created, 0 updated, 0 unchanged"
    assert account.cloud.refused == []
    calls = Counter(call.action for call in account.scf.writes())
    assert calls == {
        "CreateNamespace": 1,
        "PublishLayerVersion": 1,
        "CreateFunction": len(FUNCTIONS),
        "CreateTrigger": len(URLS) + len(TIMERS),
        "UpdateFunctionEventInvokeConfig": 1,
        "PutReservedConcurrencyConfig": len(CAPPED),
        "CreateCustomDomain": 1,
    }
    # The namespace before anything of it: SCF refuses a function in one that does not exist.
    first = account.scf.writes()[0]
    assert (first.action, first.params) == ("CreateNamespace", {"Namespace": NAMESPACE})
    assert result.lines[0] == f"+ create namespace {NAMESPACE}"
    _check_layer(account)
    _check_functions(account)
    _check_triggers(account)
    _check_domain(account)
    head = _head()
    assert f'invoke {PREFIX}db-migrate: {{"from": "{head}", "to": "{head}"}}' in result.lines

    writes = len(account.scf.writes())
    again = account.deploy("plan")
    assert again.code == 0, again.output
    assert again.last == f"plan: 0 to create, 0 to update, {RESOURCES} unchanged"
    assert again.lines[:-1] == [f"> invoke {PREFIX}db-migrate before the other functions"]

    second = account.deploy("apply")
    assert second.code == 0, second.output
    assert second.lines == [
        f'invoke {PREFIX}db-migrate: {{"from": "{head}", "to": "{head}"}}',
        f"apply: 0 created, 0 updated, {RESOURCES} unchanged",
    ]
    assert len(account.scf.writes()) == writes
    assert len(account.objects()) == 1  # the layer's zip, uploaded once
    invokes = [c for c in account.scf.calls() if c.action == "Invoke"]
    assert [c.params["InvocationType"] for c in invokes] == ["RequestResponse"] * 2
    assert account.cloud.refused == []


def _only(account: Account, action: str) -> dict[str, Any]:
    (call,) = [c for c in account.scf.writes() if c.action == action]
    return call.params


def _check_layer(account: Account) -> None:
    publish = _only(account, "PublishLayerVersion")
    layer = (account.dist / "layer" / "layer.zip").read_bytes()
    sha = hashlib.sha256(layer).hexdigest()
    key = f"packages/layer/ai-platform-app/{sha}.zip"
    assert publish["LayerName"] == "ai-platform-app"
    assert publish["CompatibleRuntimes"] == ["Python3.10"]
    assert publish["Content"] == {
        "CosBucketName": account.bucket.rsplit("-", 1)[0],
        "CosObjectName": "/" + key,
        "CosBucketRegion": "ap-guangzhou",
    }
    assert publish["Description"].endswith(f"content sha256 {sha}")
    assert account.objects() == [key]


def _check_functions(account: Account) -> None:
    created = {
        c.params["FunctionName"]: c.params
        for c in account.scf.writes()
        if c.action == "CreateFunction"
    }
    assert set(created) == {PREFIX + name for name in FUNCTIONS}
    for name, spec in MANIFEST.functions.items():
        params = created[PREFIX + name]
        code = (account.dist / "functions" / f"{name}.zip").read_bytes()
        assert base64.b64decode(params["Code"]["ZipFile"]) == code
        assert params["Runtime"] == "Python3.10"
        if spec.web is None:
            assert (params["Type"], params["Handler"]) == ("Event", "index.main_handler")
            assert "ProtocolType" not in params and "ProtocolParams" not in params
        assert (params["MemorySize"], params["Timeout"]) == (spec.memory_mb, spec.timeout_s)
        assert params["Layers"] == [{"LayerName": "ai-platform-app", "LayerVersion": 1}]
        assert params["VpcConfig"] == {"VpcId": "vpc-1a2b3c", "SubnetId": "subnet-4d5e6f"}
        assert params["Role"] == "ai-platform-run"
        assert params["Namespace"] == NAMESPACE
        env = {v["Key"]: v["Value"] for v in params["Environment"]["Variables"]}
        assert env["PIPELINE_QUEUE"] == PREFIX + "pipeline-worker"
        # SCF adds its own variables to a function's (SCF_NAMESPACE: the namespace it runs
        # in), and refuses a function that sets one: the queue's Invoke names that namespace.
        assert not [key for key in env if key.startswith("SCF_")]
        running = {**env, "SCF_NAMESPACE": params["Namespace"]}
        assert Settings.from_environ(running, resolve=False).scf_namespace == NAMESPACE
        assert env["APP_ENV"] == "production"
    assert created[PREFIX + "pipeline-worker"]["Timeout"] == 300
    ws = created[PREFIX + "ws"]
    assert (ws["Type"], ws["ProtocolType"], "Handler" in ws) == ("HTTP", "WS", False)
    assert ws["ProtocolParams"] == {"WSParams": {"IdleTimeOut": 120}}
    assert ws["Timeout"] == 900 and ws["MemorySize"] == 128
    with zipfile.ZipFile(io.BytesIO(base64.b64decode(ws["Code"]["ZipFile"]))) as code:
        bootstrap = code.getinfo("scf_bootstrap")
        assert (bootstrap.external_attr >> 16) & 0o777 == 0o755
        assert {"index.py", "scf_bootstrap"} <= set(code.namelist())
    answer = account.scf.functions[NAMESPACE, PREFIX + "ws"]
    assert (answer["Type"], answer["ProtocolType"]) == ("HTTP", "WS")
    config = _only(account, "UpdateFunctionEventInvokeConfig")
    assert config == {
        "FunctionName": PREFIX + "pipeline-worker",
        "Namespace": NAMESPACE,
        "AsyncTriggerConfig": {"RetryConfig": [{"RetryNum": 2}], "MsgTTL": 21600},
    }


def _check_triggers(account: Account) -> None:
    triggers = [c.params for c in account.scf.writes() if c.action == "CreateTrigger"]
    assert {t["Namespace"] for t in triggers} == {NAMESPACE}
    urls = [t for t in triggers if t["Type"] == "http"]
    assert sorted(t["FunctionName"] for t in urls) == sorted(PREFIX + name for name in URLS)
    for url in urls:
        # Compact, as Tencent's trigger description docs ask.
        assert url["TriggerDesc"] == '{"AuthType":"NONE","NetConfig":{"EnableIntranet":false,' + (
            '"EnableExtranet":true}}'
        )
        desc = json.loads(url["TriggerDesc"])
        assert desc["AuthType"] == "NONE" and desc["NetConfig"]["EnableExtranet"] is True
        assert url["Qualifier"] == "$LATEST"
    timers = sorted(
        (t["FunctionName"], t["TriggerName"], t["TriggerDesc"], t["Enable"])
        for t in triggers
        if t["Type"] == "timer"
    )
    assert timers == sorted((PREFIX + fn, name, cron, "OPEN") for fn, name, cron in TIMERS)


def _check_domain(account: Account) -> None:
    domain = _only(account, "CreateCustomDomain")
    assert domain["Domain"] == "api.example.com"
    assert domain["Protocol"] == "HTTPS"
    assert domain["CertConfig"] == {"CertificateId": "cert-abc123"}
    expected = routes.mapping_of_handlers(
        {name: handler(name) for name in HTTP}, MANIFEST.web_paths
    )
    sent = [
        routes.PathMapping(e["PathMatch"], e["FunctionName"].removeprefix(PREFIX))
        for e in domain["EndpointsConfig"]
    ]
    assert sorted(sent) == expected
    assert {(e["Namespace"], e["Qualifier"]) for e in domain["EndpointsConfig"]} == {
        (NAMESPACE, "$LATEST")
    }
    assert routes.resolve(sent, "/ws") == "ws"
    for name in HTTP:  # every route reaches its function through the domain
        for route in handler(name).routes:
            concrete = route.path.replace("{", "x").replace("}", "")
            assert routes.resolve(sent, concrete) == name, route.path


def test_function_code_too_large_to_send_inline_goes_through_cos(
    account: Account, monkeypatch: Any
) -> None:
    from infra.deploy import functions

    monkeypatch.setattr(functions, "INLINE_LIMIT_BYTES", 0)
    assert account.deploy("apply").code == 0
    created = [c.params for c in account.scf.writes() if c.action == "CreateFunction"]
    assert len(created) == len(FUNCTIONS)
    for params in created:
        name = params["FunctionName"].removeprefix(PREFIX)
        sha = hashlib.sha256((account.dist / "functions" / f"{name}.zip").read_bytes()).hexdigest()
        assert params["CodeSource"] == "Cos"
        assert params["Code"]["CosObjectName"] == f"/packages/functions/{PREFIX}{name}/{sha}.zip"
    assert len(account.objects()) == 1 + len(FUNCTIONS)
    assert account.deploy("plan").last.endswith(f"{RESOURCES} unchanged")
