"""What the deployer reads from its environment, and serverless.yml read with it: one check
that names every variable missing, before any call.

Its own variables: TENCENTCLOUD_SECRET_ID, TENCENTCLOUD_SECRET_KEY (TENCENTCLOUD_SESSION_TOKEN
with temporary keys), TENCENTCLOUD_REGION, DEPLOY_COS_BUCKET (the full bucket name,
`<name>-<appid>`, where code packages are uploaded), and for tests only
TENCENTCLOUD_API_ENDPOINT and COS_ENDPOINT (`host:port`, over http). serverless.yml's
`${env:NAME}` values (STAGE among them) come from the same environment.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from infra.manifest import Manifest, ManifestError, Variables, load

REQUIRED = (
    "TENCENTCLOUD_SECRET_ID",
    "TENCENTCLOUD_SECRET_KEY",
    "TENCENTCLOUD_REGION",
    "DEPLOY_COS_BUCKET",
)
_BUCKET = re.compile(r"^(?P<name>[a-z0-9][a-z0-9\-]*)-(?P<appid>\d+)$")


class ConfigurationError(ValueError):
    """The deploy cannot start: nothing has been called yet."""


@dataclass(frozen=True)
class Settings:
    secret_id: str
    secret_key: str = field(repr=False)  # never in a log line or a traceback's locals repr
    session_token: str | None = field(repr=False)
    region: str
    bucket: str  # `<name>-<appid>`, as COS names it
    api_endpoint: str | None  # tests: every Tencent Cloud product over http at host:port
    cos_endpoint: str | None  # tests: COS over http at host:port

    @property
    def bucket_short_name(self) -> str:
        """The bucket as SCF's `CosBucketName` wants it: without `-<appid>`."""
        found = _BUCKET.match(self.bucket)
        assert found is not None, "checked by read()"
        return found["name"]


@dataclass(frozen=True)
class Deployment:
    settings: Settings
    manifest: Manifest
    variables: Variables  # names functions as deployed: `variables.function_name(name)`


def read(config: Path, environ: Mapping[str, str]) -> Deployment:
    """The settings and the manifest, or ConfigurationError naming every variable missing."""
    missing = {name for name in REQUIRED if not environ.get(name)}
    variables = Variables(environ, strict=True, deployed_names=True)
    try:
        manifest = load(config, variables)
    except ManifestError:
        if not variables.missing:
            raise
    missing |= variables.missing
    if missing:
        raise ConfigurationError("not set: " + ", ".join(sorted(missing)))
    bucket = environ["DEPLOY_COS_BUCKET"]
    if not _BUCKET.match(bucket):
        raise ConfigurationError(
            f"DEPLOY_COS_BUCKET={bucket!r}: give the full bucket name, <name>-<appid>"
        )
    settings = Settings(
        secret_id=environ["TENCENTCLOUD_SECRET_ID"],
        secret_key=environ["TENCENTCLOUD_SECRET_KEY"],
        session_token=environ.get("TENCENTCLOUD_SESSION_TOKEN") or None,
        region=environ["TENCENTCLOUD_REGION"],
        bucket=bucket,
        api_endpoint=environ.get("TENCENTCLOUD_API_ENDPOINT") or None,
        cos_endpoint=environ.get("COS_ENDPOINT") or None,
    )
    return Deployment(settings, manifest, variables)
