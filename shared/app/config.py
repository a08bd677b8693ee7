"""Settings: one object, read from the environment once per instance.

Every variable of the API contract's configuration table lives here. The defaults are the
embedded default that `make run` starts on; `APP_ENV=production` refuses to start while any
of them is still in effect (see `production_problems`).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

# Known and public: tokens signed with it are worthless outside a laptop.
DEV_JWT_SECRET = "dev-only-jwt-secret-" + "x" * 44
LOCAL_DIR = Path(".local")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    app_env: Literal["local", "test", "production"] = "local"
    port: int = 8000
    log_level: str = "INFO"

    database_url: str = f"sqlite:///{LOCAL_DIR}/app.db"
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
    wechat_appid: str = ""
    wechat_secret: SecretStr = SecretStr("")
    wechat_api_base: str = ""  # empty: the local sandbox

    tencentcloud_secret_id: str = ""
    tencentcloud_secret_key: SecretStr = SecretStr("")
    tencentcloud_region: str = "ap-guangzhou"
    tencentcloud_api_endpoint: str = ""

    queue_backend: Literal["local", "cmq"] = "local"
    ws_push_url: str = ""

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

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
        if not self.wechat_api_base:
            problems.append("WECHAT_API_BASE is unset (sandbox WeChat login)")
        if self.queue_backend == "local":
            problems.append("QUEUE_BACKEND is local")
        return problems


class ProductionMisconfigured(RuntimeError):
    pass


@functools.lru_cache(maxsize=1)
def get_settings() -> Settings:
    settings = Settings()
    if settings.app_env == "production":
        problems = settings.production_problems()
        if problems:
            raise ProductionMisconfigured(
                "refusing to start with APP_ENV=production: " + "; ".join(problems)
            )
    return settings
