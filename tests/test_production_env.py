"""Every function loads in production with only what serverless.yml gives it: its declared
environment (the deployer's `${env:...}` values filled with valid stand-ins) and what SCF
itself sets, in a fresh interpreter as an instance would start. A variable a function needs
and nobody declares stops it at load (APP_ENV=production refuses every dev default), so it
shows up here, by name, before a deploy does."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys

import pytest

from app.config import Settings
from app.config.variables import SEALABLE
from app.crypto import envelopes, providers
from infra import manifest
from tests.fakes.kms import FakeKms
from tests.fakes.tencentcloud import FakeTencentCloud
from tests.support.functions import ROOT
from tests.support.payments import PRODUCTION_PAYMENT_ENV

# What an operator puts in the deployer's environment: valid, and nothing real.
DEPLOYER_ENV = {
    "STAGE": "prod",
    "API_DOMAIN": "api.example.com",
    "API_CERTIFICATE_ID": "cert-1",
    "SCF_ROLE": "ai-platform-run",
    "VPC_ID": "vpc-1",
    "SUBNET_ID": "subnet-1",
    "DATABASE_URL": "mysql+pymysql://app:pw@10.0.0.5:3306/app",
    "REDIS_URL": "redis://10.0.0.6:6379/0",
    "JWT_SECRET": secrets.token_urlsafe(64),
    "METRICS_TOKEN": secrets.token_hex(32),
    "PIPELINE_ALLOWED_HOSTS": "ai.example.com",
    "ADMIN_PHONES": "13800138000",
    "SMS_SDK_APP_ID": "1400000000",
    "SMS_SIGN_NAME": "Example",
    "SMS_TEMPLATE_ID": "100001",
    "WECHAT_APPID": "wx0000000000000000",
    "WECHAT_SECRET": secrets.token_hex(16),
    "COS_BUCKET": "ai-platform-1250000000",
    "COS_REGION": "ap-guangzhou",
    "KMS_KEY_ID": "2c9e58e6-9f1a-11ef-8e65-52540089bc41",
    **PRODUCTION_PAYMENT_ENV,
}
# The PEM keys travel as references to the secrets table (README "Secrets and KMS").
PEM_KEYS = (
    "WECHATPAY_PRIVATE_KEY",
    "WECHATPAY_PUBLIC_KEY",
    "ALIPAY_PRIVATE_KEY",
    "ALIPAY_PUBLIC_KEY",
)
# What SCF sets in every instance of a function with a run role.
PLATFORM_ENV = {
    "TENCENTCLOUD_REGION": "ap-guangzhou",
    "TENCENTCLOUD_SECRETID": "AKIDrole",
    "TENCENTCLOUD_SECRETKEY": "role-key",
    "TENCENTCLOUD_SESSIONTOKEN": "role-token",
    "SCF_RUNTIME": "Python3.10",
}

CHILD = """
import index
from app.config import get_settings
# An event function's handler, or a web function's ASGI app; and the settings it serves on.
assert callable(getattr(index, "main_handler", None) or index.app)
get_settings()
"""

DEPLOYED = manifest.load(
    manifest.DEFAULT_CONFIG,
    manifest.Variables(DEPLOYER_ENV, strict=True, deployed_names=True),
)


def test_the_declared_environment_fits_in_scfs_4_kb() -> None:
    for spec in DEPLOYED.functions.values():
        size = sum(len(k) + len(v) for k, v in spec.environment.items())
        assert size < 4096, f"{spec.name}: {size} bytes of environment"
        assert not [k for k in spec.environment if k.startswith(("TENCENTCLOUD_", "QCLOUD_"))]


def test_the_declared_environment_fits_with_every_secret_as_a_kms_envelope() -> None:
    """The worst case the README allows: every key variable a function declares (and the
    optional Pushgateway URL) holds a KMS envelope, whose data-key blob is the size of KMS's
    own (tests/fakes/kms.py), and while signing keys rotate, JWT_PREVIOUS_SECRET a reference
    (as an envelope it would not fit beside every payment key's: README "Secrets and
    KMS")."""
    with FakeTencentCloud() as cloud:
        kms = FakeKms(cloud)
        keys = providers.from_settings(
            Settings.from_environ(kms.env(kms.create_key()), resolve=False)
        )
        env = {**DEPLOYER_ENV, "METRICS_PUSHGATEWAY_URL": "http://1250000000:t0ken@10.0.0.9:9091"}
        env.update({name: f"secret:{name}" for name in (*PEM_KEYS, "JWT_PREVIOUS_SECRET")})
        references = {*PEM_KEYS, "JWT_PREVIOUS_SECRET"}
        sealed = ({name.upper() for name in SEALABLE} & set(env)) - references
        assert {"DATABASE_URL", "JWT_SECRET", "WECHAT_SECRET", "WECHATPAY_APIV3_KEY"} <= sealed
        for name in sealed:
            env[name] = envelopes.seal(env[name].encode(), name, keys)
    deployed = manifest.load(
        manifest.DEFAULT_CONFIG, manifest.Variables(env, strict=True, deployed_names=True)
    )
    for spec in deployed.functions.values():
        size = sum(len(k) + len(v) for k, v in spec.environment.items())
        assert size < 4096, f"{spec.name}: {size} bytes of environment"
    assert all("JWT_PREVIOUS_SECRET" in spec.environment for spec in deployed.functions.values())


def start(spec: manifest.FunctionSpec, environment: dict[str, str]) -> str | None:
    """Import the function as an instance would, with exactly `environment` and what SCF
    sets; None when it loads, else what it printed."""
    child = run_instance(spec, environment)
    return None if child.returncode == 0 else child.stderr[-2000:]


def run_instance(
    spec: manifest.FunctionSpec, environment: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    env = {
        **environment,
        **PLATFORM_ENV,
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": f"{spec.directory}{os.pathsep}{ROOT / 'shared'}",
    }
    return subprocess.run(
        [sys.executable, "-c", CHILD],
        cwd=spec.directory,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


@pytest.mark.parametrize("name", sorted(DEPLOYED.functions))
def test_a_function_loads_in_production_with_only_its_declared_variables(name: str) -> None:
    failure = start(DEPLOYED.functions[name], DEPLOYED.functions[name].environment)
    assert failure is None, f"{name} does not load in production:\n{failure}"


def test_a_missing_variable_stops_the_function_at_load() -> None:
    """The check itself fails when it should: without the SMS template, a sign-in
    function refuses to start and says why."""
    spec = DEPLOYED.functions["auth-login"]
    failure = start(spec, {k: v for k, v in spec.environment.items() if k != "SMS_TEMPLATE_ID"})
    assert failure is not None and "SMS_TEMPLATE_ID" in failure


@pytest.mark.parametrize("name", ["auth-login", "pipeline-worker", "order-reconcile", "ws"])
def test_a_refused_start_writes_one_json_line_naming_the_function_and_why(name: str) -> None:
    # An HTTP, a queue, a timer and the web function: each reads the settings at import.
    spec = DEPLOYED.functions[name]
    environment = {k: v for k, v in spec.environment.items() if k != "JWT_SECRET"}
    child = run_instance(spec, {**environment, "SCF_FUNCTIONNAME": f"app-prod-{name}"})
    assert child.returncode != 0
    lines = [json.loads(line) for line in child.stdout.splitlines()]
    assert [line["message"] for line in lines] == ["instance refused to start"]
    assert lines[0]["level"] == "error"
    assert lines[0]["function"] == f"app-prod-{name}"
    assert lines[0]["error"] == "ProductionMisconfigured"
    assert "JWT_SECRET" in lines[0]["reason"]
    assert "dev-" not in child.stdout  # names the variable, never a value
