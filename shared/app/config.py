"""Settings: one object, read from the environment once per instance.

Every variable of the API contract's configuration table lives here, as a field whose
upper-cased name is the variable (`database_url` <- DATABASE_URL); `ENV_NAMES` lists the
fields read from other or several names. Values are validated and converted by pydantic
(plain `BaseModel`: pydantic-settings would add ~50 ms to every cold start for features
nothing here uses). The defaults are the embedded default that `make run` starts on;
`APP_ENV=production` refuses to start while any of them is still in effect (see
`production_problems`).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

# Known and public: tokens signed with it are worthless outside a laptop.
DEV_JWT_SECRET = "dev-only-jwt-secret-" + "x" * 44
LOCAL_DIR = Path(".local")


# Fields read from other variables than their own upper-cased name, first found wins: the
# explicit keys, or the temporary ones SCF injects for the function's run role.
ENV_NAMES: dict[str, tuple[str, ...]] = {
    "tencentcloud_secret_id": ("TENCENTCLOUD_SECRET_ID", "TENCENTCLOUD_SECRETID"),
    "tencentcloud_secret_key": ("TENCENTCLOUD_SECRET_KEY", "TENCENTCLOUD_SECRETKEY"),
    "tencentcloud_session_token": ("TENCENTCLOUD_SESSION_TOKEN", "TENCENTCLOUD_SESSIONTOKEN"),
}


class Settings(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    app_env: Literal["local", "test", "production"] = "local"
    port: int = 8000
    log_level: str = "INFO"

    database_url: str = f"sqlite:///{LOCAL_DIR}/app.db"
    # redis:// or rediss:// (one server), redis+cluster:// or rediss+cluster:// (a Redis
    # Cluster, through any of its nodes), memory:// (fakeredis); see app.redis_client.
    redis_url: str = "memory://"

    db_pool_min: int = Field(10, ge=0)
    db_pool_max: int = Field(100, ge=1)
    db_pool_idle_timeout_s: float = Field(30, gt=0)
    db_pool_acquire_timeout_s: float = Field(10, gt=0)
    # A connection reused after sitting idle this long is checked with SELECT 1 first.
    db_pool_ping_after_idle_s: float = Field(5, ge=0)

    jwt_secret: SecretStr = SecretStr(DEV_JWT_SECRET)
    jwt_issuer: str = "ai-platform"
    jwt_audience: str = "ai-platform-app"
    access_token_ttl_s: int = Field(900, gt=0)
    refresh_token_ttl_s: int = Field(604800, gt=0)

    cors_allow_origins: str = ""
    max_body_bytes: int = Field(1_048_576, gt=0)

    sms_provider: Literal["tencent", "console"] = "console"
    sms_sdk_app_id: str = ""
    sms_sign_name: str = ""
    sms_template_id: str = ""
    sms_cooldown_s: int = Field(60, ge=1)
    sms_per_phone_per_day: int = Field(10, ge=1)
    sms_per_ip_per_hour: int = Field(30, ge=1)
    sms_code_ttl_s: int = Field(300, ge=60)

    login_max_failures: int = Field(5, ge=1)
    login_lock_s: int = Field(900, ge=1)
    login_failures_per_ip_per_hour: int = Field(100, ge=1)
    bcrypt_cost: int = Field(12, ge=10, le=16)
    admin_phones: str = ""  # comma separated, any accepted phone format
    signup_quota: int = Field(0, ge=0)
    invite_pool_target: int = Field(500, ge=0)
    wechat_appid: str = ""
    wechat_secret: SecretStr = SecretStr("")
    wechat_api_base: str = ""  # empty: the local sandbox

    # See ENV_NAMES.
    tencentcloud_secret_id: str = ""
    tencentcloud_secret_key: SecretStr = SecretStr("")
    tencentcloud_session_token: SecretStr = SecretStr("")
    tencentcloud_region: str = "ap-guangzhou"
    tencentcloud_api_endpoint: str = ""

    queue_backend: Literal["local", "cmq"] = "local"
    pipeline_queue: str = "pipeline-tasks"
    pipeline_max_concurrency: int = Field(5, ge=1, le=100)
    pipeline_host_concurrency: int = Field(20, ge=1)
    pipeline_allowed_hosts: str = "127.0.0.1,localhost"
    # Work with no progress for this long is published again by the saga sweeper.
    pipeline_stall_s: int = Field(120, ge=0)
    task_max_runtime_s: int = Field(3600, ge=1)
    ws_push_url: str = ""
    # COS: an empty endpoint means the region's own; the local cloud points it at its
    # embedded S3-compatible store (moto) when unset.
    cos_bucket: str = "ai-platform-local-1250000000"
    cos_region: str = "ap-guangzhou"
    cos_endpoint: str = ""

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] = os.environ) -> Settings:
        """The settings the variables in `environ` give; a bad value is a ValidationError
        naming the field."""
        values: dict[str, str] = {}
        for name in cls.model_fields:
            for variable in ENV_NAMES.get(name, (name.upper(),)):
                if variable in environ:
                    values[name] = environ[variable]
                    break
        return cls.model_validate(values)

    @field_validator("redis_url")
    @classmethod
    def _cluster_has_database_zero_only(cls, url: str) -> str:
        scheme, _, address = url.partition("://")
        if scheme.endswith("+cluster"):
            database = address.partition("?")[0].partition("/")[2]
            if database not in ("", "0"):
                raise ValueError("a Redis Cluster has database 0 only")
        return url

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def pipeline_hosts(self) -> frozenset[str]:
        return frozenset(
            h.strip().lower() for h in self.pipeline_allowed_hosts.split(",") if h.strip()
        )

    @property
    def cors_origins(self) -> frozenset[str]:
        return frozenset(o.strip() for o in self.cors_allow_origins.split(",") if o.strip())

    def production_problems(self) -> list[str]:
        """The dev defaults still in effect, each named so the operator knows what to set."""
        problems = []
        if self.jwt_secret.get_secret_value() == DEV_JWT_SECRET:
            problems.append("JWT_SECRET is the built-in dev secret")
        elif len(self.jwt_secret.get_secret_value()) < 64:
            problems.append("JWT_SECRET is shorter than 64 characters")
        if self.is_sqlite:
            problems.append("DATABASE_URL is SQLite")
        if self.redis_url.startswith("memory://"):
            problems.append("REDIS_URL is memory:// (in-process fakeredis)")
        if self.sms_provider == "console":
            problems.append("SMS_PROVIDER is console")
        elif not (self.sms_sdk_app_id and self.sms_sign_name and self.sms_template_id):
            problems.append("SMS_SDK_APP_ID, SMS_SIGN_NAME and SMS_TEMPLATE_ID must all be set")
        if not self.wechat_api_base:
            problems.append("WECHAT_API_BASE is unset (sandbox WeChat login)")
        if self.queue_backend == "local":
            problems.append("QUEUE_BACKEND is local")
        if self.cos_endpoint.split(":")[0] in {"127.0.0.1", "localhost"}:
            problems.append("COS_ENDPOINT is the local cloud's embedded store")
        if {"127.0.0.1", "localhost"} & self.pipeline_hosts:
            problems.append("PIPELINE_ALLOWED_HOSTS lets pipelines call this machine")
        return problems


class ProductionMisconfigured(RuntimeError):
    pass


@functools.lru_cache(maxsize=1)
def get_settings() -> Settings:
    settings = Settings.from_environ()
    if settings.app_env != "local" and len(settings.jwt_secret.get_secret_value()) < 64:
        # Short HS256 secrets fall to offline guessing; only a laptop may use one.
        raise ProductionMisconfigured(
            f"JWT_SECRET is shorter than 64 characters (APP_ENV={settings.app_env})"
        )
    if settings.app_env == "production":
        problems = settings.production_problems()
        if problems:
            raise ProductionMisconfigured(
                "refusing to start with APP_ENV=production: " + "; ".join(problems)
            )
    return settings
