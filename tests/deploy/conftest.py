"""An empty Tencent Cloud account for each deploy test: the fake SCF (schema-checked, behind
the TC3-checking endpoint) and moto's S3 app as COS, with the deploy bucket; the packages
`make package` would build (the real function zips, a small stand-in for the layer, whose
real build downloads wheels); and `account.deploy("plan")`, which runs the deployer's
`main` in-process against them."""

from __future__ import annotations

import io
import os
import secrets
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from infra import package
from infra.deploy import scf as scf_api
from infra.deploy.__main__ import main
from infra.local.embedded import EmbeddedCos
from infra.manifest import DEFAULT_CONFIG
from tests.fakes.scf import FakeScf
from tests.fakes.tencentcloud import FakeTencentCloud
from tests.support.functions import FUNCTIONS, handler
from tests.support.settings import app_engine_under

APPID = "1250000000"
PREFIX = "ai-platform-test-"
NAMESPACE = "ai-platform-test"  # STAGE=test's own, where the deployer puts its functions


def write_layer(
    path: Path, marker: str = "1", bytecode_tags: tuple[str, ...] = ("cpython-310",)
) -> None:
    """A stand-in for the layer: `app/` at the zip's root with its bytecode beside it, as
    the real one has them."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("app/__init__.py", f"# stand-in layer {marker}\n")
        for tag in bytecode_tags:
            archive.writestr(f"app/__pycache__/__init__.{tag}.pyc", b"stand-in")


@pytest.fixture(scope="session")
def packages(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dist = tmp_path_factory.mktemp("dist")
    for name in package.function_names():
        package.build_function(name, dist / "functions")
    write_layer(dist / "layer" / package.LAYER_NAME)
    return dist


def deploy_environment(fake: FakeTencentCloud, cos: EmbeddedCos, bucket: str) -> dict[str, str]:
    """What a deploy is run with: the deployer's own variables and serverless.yml's."""
    return {
        **fake.env(),
        "TENCENTCLOUD_REGION": "ap-guangzhou",
        "DEPLOY_COS_BUCKET": bucket,
        "COS_ENDPOINT": cos.endpoint,
        "STAGE": "test",
        "API_DOMAIN": "api.example.com",
        "API_CERTIFICATE_ID": "cert-abc123",
        "SCF_ROLE": "ai-platform-run",
        "VPC_ID": "vpc-1a2b3c",
        "SUBNET_ID": "subnet-4d5e6f",
        "DATABASE_URL": os.environ["DATABASE_URL"],
        "REDIS_URL": "redis://10.0.0.5:6379/0",
        "JWT_SECRET": secrets.token_urlsafe(64),
        "METRICS_TOKEN": secrets.token_hex(32),
        "PIPELINE_ALLOWED_HOSTS": "api.upstream.example",
        "ADMIN_PHONES": "13800000000",
        "SMS_SDK_APP_ID": "1400000000",
        "SMS_SIGN_NAME": "AI",
        "SMS_TEMPLATE_ID": "100001",
        "WECHAT_APPID": "wx0123456789",
        "WECHAT_SECRET": "wechat-secret",
        "COS_BUCKET": f"data-{APPID}",
        "COS_REGION": "ap-guangzhou",
        "KMS_KEY_ID": "2c9e58e6-9f1a-11ef-8e65-52540089bc41",
    }


def run_migrate(event: Any, context: dict[str, Any], environment: dict[str, str]) -> Any:
    """db-migrate's real main_handler, on the database its deployed environment names."""
    with app_engine_under(DATABASE_URL=environment["DATABASE_URL"]):
        return handler("db-migrate")(event, context)


@dataclass
class Result:
    code: int
    output: str
    lines: list[str] = field(default_factory=list)

    @property
    def last(self) -> str:
        return self.lines[-1] if self.lines else ""

    @property
    def changes(self) -> list[str]:
        """The lines that record a change (`+`, `~`, `-`, `!`), without the invoke's lines."""
        return [line for line in self.lines if line[:2] in ("+ ", "~ ", "- ", "! ")]


@dataclass
class Account:
    cloud: FakeTencentCloud
    scf: FakeScf
    cos: EmbeddedCos
    environ: dict[str, str]
    dist: Path
    tmp: Path

    @property
    def bucket(self) -> str:
        return self.environ["DEPLOY_COS_BUCKET"]

    def deploy(
        self,
        command: str,
        *,
        environ: dict[str, str] | None = None,
        config: Path | None = None,
        dist: Path | None = None,
    ) -> Result:
        out = io.StringIO()
        argv = [command, "--dist", str(dist or self.dist)]
        if config is not None:
            argv += ["--config", str(config)]
        code = main(argv, self.environ if environ is None else environ, out)
        text = out.getvalue()
        return Result(code, text, text.splitlines())

    def edited_config(self, edit: Any) -> Path:
        """A copy of serverless.yml, changed by `edit(data)`, naming the real function folders."""
        data = yaml.safe_load(DEFAULT_CONFIG.read_text())
        data["functions_dir"] = str(FUNCTIONS)
        edit(data)
        path = self.tmp / "serverless.yml"
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        return path

    def objects(self) -> list[str]:
        from xml.etree import ElementTree

        import requests

        listing = requests.get(f"http://{self.cos.endpoint}/{self.bucket}", timeout=10)
        root = ElementTree.fromstring(listing.content)
        return sorted(node.text or "" for node in root.iter() if node.tag.endswith("Key"))


@pytest.fixture
def account(packages: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Account]:
    monkeypatch.setattr(scf_api, "POLL_S", 0.02)
    # moto keeps its buckets in the process, across servers: a bucket of its own per test.
    bucket = f"deploy{secrets.token_hex(4)}-{APPID}"
    cos = EmbeddedCos().start(bucket)
    try:
        with FakeTencentCloud() as cloud:
            fake = FakeScf(cloud, appid=APPID, cos_endpoint=cos.endpoint, settle_s=0.05)
            fake.run_with(PREFIX + "db-migrate", run_migrate)
            environ = deploy_environment(cloud, cos, bucket)
            yield Account(cloud, fake, cos, environ, packages, tmp_path)
    finally:
        cos.stop()


@pytest.fixture
def deployed(account: Account) -> Iterator[Account]:
    """An account after one successful apply, its calls cleared; nothing refused after."""
    result = account.deploy("apply")
    assert result.code == 0, result.output
    account.cloud.calls.clear()
    yield account
    assert account.cloud.refused == []
