"""Settings: one object, read from the environment once per instance.

Every variable of the API contract's configuration table lives here, as a field whose
upper-cased name is the variable (`database_url` <- DATABASE_URL); `ENV_NAMES` lists the
fields read from other or several names. Values are validated and converted by pydantic
(plain `BaseModel`: pydantic-settings would add ~50 ms to every cold start for features
nothing here uses). The defaults are the embedded default that `make run` starts on;
`APP_ENV=production` refuses to start while any of them is still in effect (see
`production_problems`).

A key or secret variable (`SEALABLE`) may hold an envelope (`enc:v1:...`, from
`make -s encrypt`) or a reference to a stored secret (`secret:NAME`) instead of its value:
`from_environ` resolves them (app.crypto.resolution) before the settings exist, so nothing
ever sees the sealed text, and a value that does not resolve stops the instance at load
(`UnresolvedSecret`, naming the variable and the reason, never the value), as does one in
any other variable, which would otherwise be taken as its own value.
"""

from __future__ import annotations

import functools
import math
import os
from collections import Counter
from collections.abc import Mapping
from itertools import pairwise
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from app.allow_list import AllowedHost, parse_allowed_hosts
from app.crypto import is_sealed

# Known and public: tokens signed with it are worthless outside a laptop.
DEV_JWT_SECRET = "dev-only-jwt-secret-" + "x" * 44
# Known and public too: what is sealed under it on a laptop is sealed for the laptop only.
DEV_LOCAL_MASTER_KEY = "ZGV2LW9ubHktbG9jYWwtbWFzdGVyLWtleS0zMmJ5dGU="
# The least `secret_bits` production takes: a signing key must withstand offline guessing;
# the metrics token guards read-only numbers and is checked online.
JWT_SECRET_MIN_BITS = 128
METRICS_TOKEN_MIN_BITS = 64
LOCAL_DIR = Path(".local")
# The embedded store's bucket on a laptop; in production it would name a bucket of another
# account (1250000000 is no APPID of ours).
LOCAL_COS_BUCKET = "ai-platform-local-1250000000"


# Fields read from other variables than their own upper-cased name, first found wins: the
# explicit keys, or the temporary ones SCF injects for the function's run role.
ENV_NAMES: dict[str, tuple[str, ...]] = {
    "tencentcloud_secret_id": ("TENCENTCLOUD_SECRET_ID", "TENCENTCLOUD_SECRETID"),
    "tencentcloud_secret_key": ("TENCENTCLOUD_SECRET_KEY", "TENCENTCLOUD_SECRETKEY"),
    "tencentcloud_session_token": ("TENCENTCLOUD_SESSION_TOKEN", "TENCENTCLOUD_SESSIONTOKEN"),
}

# The fields whose variables may hold an envelope or a `secret:` reference: every key or
# secret the settings hold, and the providers' public keys (PEM, too long to fit SCF's
# 4 KB of variables otherwise). Not LOCAL_MASTER_KEY (it opens the
# others) nor the run role's session token (SCF sets it).
SEALABLE = frozenset(
    {
        "database_url",
        "redis_url",
        "jwt_secret",
        "wechat_secret",
        "tencentcloud_secret_key",
        "metrics_token",
        "metrics_pushgateway_url",
        "wechatpay_private_key",
        "wechatpay_apiv3_key",
        "wechatpay_public_key",
        "alipay_private_key",
        "alipay_public_key",
    }
)

# The variables those fields are read from: the names `make -s encrypt` seals for.
SEALABLE_VARIABLES = frozenset(
    variable for name in SEALABLE for variable in ENV_NAMES.get(name, (name.upper(),))
)

MISPLACED = (
    "holds an envelope or a secret: reference, which only a key or secret variable may "
    "(this one would be read as the text itself)"
)


# Each payment channel: the setting that turns it on, and what it then needs (its notify
# URL last).
_WECHATPAY = "mchid appid private_key cert_serial apiv3_key public_key public_key_id notify_url"
PAYMENT_CHANNELS: dict[str, tuple[str, ...]] = {
    "wechatpay_api_base": tuple(f"wechatpay_{name}" for name in _WECHATPAY.split()),
    "alipay_gateway": (
        "alipay_appid",
        "alipay_private_key",
        "alipay_public_key",
        "alipay_notify_url",
    ),
}


def secret_bits(secret: str) -> float:
    """A cautious estimate of a secret's entropy in bits: its characters' Shannon entropy
    times its length, scaled down by how much of it repeats (the share of 4-character runs
    seen before) and how much of it steps through neighbouring characters (`aaaa`, `abcd`).
    Random secrets score near their true strength (`openssl rand -hex 32`: about 240);
    `"a" * 64` and a keyboard walk score next to nothing."""
    n = len(secret)
    if n < 4:
        return 0.0
    shannon = -sum(c / n * math.log2(c / n) for c in Counter(secret).values())
    runs = [secret[i : i + 4] for i in range(n - 3)]
    fresh = len(set(runs)) / len(runs)
    steps = sum(abs(ord(a) - ord(b)) <= 1 for a, b in pairwise(secret)) / (n - 1)
    return shannon * n * fresh * (1 - steps)


class Settings(BaseModel):
    # A settings error is logged at load: it names the field, never its value (a plain
    # REDIS_URL or DATABASE_URL carries a password).
    model_config = ConfigDict(extra="ignore", frozen=True, hide_input_in_errors=True)

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
    # Codes sent per clock hour across all phones: the cap on what SMS pumping can cost.
    sms_global_per_hour: int = Field(1000, ge=1)
    sms_code_ttl_s: int = Field(300, ge=60)

    login_max_failures: int = Field(5, ge=1)
    login_lock_s: int = Field(900, ge=1)
    login_failures_per_ip_per_hour: int = Field(100, ge=1)
    # Password checks per phone per hour, right ones included: each is a bcrypt check.
    login_per_phone_per_hour: int = Field(30, ge=1)
    bcrypt_cost: int = Field(12, ge=10, le=16)
    admin_phones: str = ""  # comma separated, any accepted phone format
    # At most what a balance holds (app.quota.service.QUOTA_MAX): past it every sign-up fails.
    signup_quota: int = Field(0, ge=0, le=2**31 - 1)
    invite_pool_target: int = Field(500, ge=0)
    wechat_appid: str = ""
    wechat_secret: SecretStr = SecretStr("")
    wechat_api_base: str = ""  # empty: the local sandbox (APP_ENV=local only)
    wechat_login_per_ip_per_hour: int = Field(60, ge=1)
    # Realtime (app.realtime): the subscription message template sent when a task ends and
    # its user is not connected (unset: none is sent); how long the `ws` web function holds
    # one connection before closing it for the client to reconnect, under its time limit.
    wechat_subscribe_template_id: str = ""
    ws_max_connection_s: float = Field(870, gt=0)

    # Payments (app.payments). A channel is configured when its API base or gateway is set;
    # unset on a laptop (APP_ENV=local), the local cloud's sandbox stands in for it with
    # keys of its own. Keys are PEM text (PKCS#1 or PKCS#8), an envelope or a secret:
    # reference; the public keys too, since all of a function's variables share 4 KB.
    wechatpay_mchid: str = ""
    wechatpay_appid: str = ""
    wechatpay_private_key: SecretStr = SecretStr("")
    wechatpay_cert_serial: str = ""
    wechatpay_apiv3_key: SecretStr = SecretStr("")
    wechatpay_public_key: SecretStr = SecretStr("")
    wechatpay_public_key_id: str = ""
    wechatpay_api_base: str = ""
    wechatpay_notify_url: str = ""
    alipay_appid: str = ""
    alipay_private_key: SecretStr = SecretStr("")
    alipay_public_key: SecretStr = SecretStr("")
    alipay_gateway: str = ""
    alipay_notify_url: str = ""
    order_expiry_s: int = Field(1800, ge=60, le=7200)
    # Each order is a trade made at the provider: a user's orders are limited per hour.
    orders_per_user_per_hour: int = Field(20, ge=1)

    # See ENV_NAMES.
    tencentcloud_secret_id: str = ""
    tencentcloud_secret_key: SecretStr = SecretStr("")
    tencentcloud_session_token: SecretStr = SecretStr("")
    tencentcloud_region: str = "ap-guangzhou"
    tencentcloud_api_endpoint: str = ""

    queue_backend: Literal["local", "scf"] = "local"
    # The function the runner's messages invoke: its deployed name on SCF.
    pipeline_queue: str = "pipeline-worker"
    scf_namespace: str = "default"
    pipeline_max_concurrency: int = Field(5, ge=1, le=100)
    pipeline_host_concurrency: int = Field(20, ge=1)
    pipeline_allowed_hosts: str = "127.0.0.1,localhost"
    pipeline_max_branches: int = Field(100, ge=1, le=1000)
    # Work with no progress for this long is published again by the saga sweeper.
    pipeline_stall_s: int = Field(120, ge=0)
    task_max_runtime_s: int = Field(3600, ge=1)
    # COS: an empty endpoint means the region's own; the local cloud points it at its
    # embedded S3-compatible store (moto) when unset.
    cos_bucket: str = LOCAL_COS_BUCKET
    cos_region: str = "ap-guangzhou"
    cos_endpoint: str = ""
    # Storage (app.storage): outputs larger than this many bytes of JSON go to COS; client
    # uploads up to UPLOAD_MAX_BYTES; what the backend writes lives RESULT_RETENTION_DAYS.
    storage_inline_max_bytes: int = Field(16384, ge=1024, le=1_048_576)
    upload_max_bytes: int = Field(10_485_760, ge=1, le=5 * 1024**3)
    result_retention_days: int = Field(30, ge=1, le=3650)
    # cos-cleanup: orphans younger than this are left (a task may be about to name them),
    # so it is at least the presigned PUT's 15 minutes and the time to name the upload in a
    # task (app.storage.uploads: a task may name one until 5 minutes before the grace ends);
    # the price its savings are estimated with.
    cos_orphan_grace_s: int = Field(3600, ge=1800)
    cos_price_cny_per_gb_month: float = Field(0.118, ge=0)
    # Metrics pushed to a Pushgateway (app.observability.push): unset, nothing is pushed. The
    # URL may carry basic-auth credentials (Tencent Managed Prometheus: APPID and token). At
    # most one push per interval per instance; an invocation waits for one at most the
    # timeout.
    metrics_pushgateway_url: SecretStr = SecretStr("")
    metrics_push_interval_s: float = Field(10, gt=0)
    metrics_push_timeout_s: float = Field(0.5, gt=0, le=5)
    # Bearer token GET /metrics requires; unset, it is open (production refuses that).
    metrics_token: SecretStr = SecretStr("")
    # Envelope encryption (app.crypto): what new envelopes are sealed under. `kms`: the KMS
    # key KMS_KEY_ID; `local`: LOCAL_MASTER_KEY, 32 bytes in base64, for laptops and tests
    # (production refuses it).
    crypto_provider: Literal["kms", "local"] = "local"
    kms_key_id: str = ""
    # Unset on a laptop (APP_ENV=local), the public DEV_LOCAL_MASTER_KEY: `make run` can
    # store secrets with nothing configured, and what it seals is worthless elsewhere.
    local_master_key: SecretStr = SecretStr("")
    # How long the load waits, in all, for its envelopes and references (asked at once by
    # app.crypto.resolution): well inside SCF's initialisation limit, 65 s by default.
    secrets_load_timeout_s: float = Field(5, gt=0, le=60)

    @model_validator(mode="before")
    @classmethod
    def _laptop_master_key(cls, values: Any) -> Any:
        if (
            isinstance(values, dict)
            and values.get("app_env", "local") == "local"
            and not values.get("local_master_key")
        ):
            return {**values, "local_master_key": DEV_LOCAL_MASTER_KEY}
        return values

    @field_validator("pipeline_allowed_hosts")
    @classmethod
    def _allow_list_parses(cls, value: str) -> str:
        parse_allowed_hosts(value)
        return value

    @classmethod
    def from_environ(
        cls, environ: Mapping[str, str] = os.environ, *, resolve: bool = True
    ) -> Settings:
        """The settings the variables in `environ` give; a bad value is a ValidationError
        naming the field. With `resolve`, envelopes and references in SEALABLE variables
        are replaced by their values; one that does not resolve is UnresolvedSecret, and
        so is one in a variable that is not SEALABLE (it would be taken as the value)."""
        read: dict[str, tuple[str, str]] = {}  # field -> (variable, value)
        for name in cls.model_fields:
            for variable in ENV_NAMES.get(name, (name.upper(),)):
                if variable in environ:
                    read[name] = (variable, environ[variable])
                    break
        values = {name: value for name, (_, value) in read.items()}
        settings = cls.model_validate(values)
        if not resolve:
            return settings
        # An envelope or a reference where none is opened would be taken as the value
        # itself: an instance signing or calling with `enc:v1:...` instead of stopping.
        misplaced = [v for name, (v, value) in read.items() if _misplaced(name, value)]
        sealed = {v: value for name, (v, value) in read.items() if _sealed(name, value)}
        if not sealed and not misplaced:
            return settings
        field_of = {v: name for name, (v, _) in read.items()}
        return settings._resolved(values, field_of, sealed, misplaced)

    def _resolved(
        self,
        values: dict[str, str],
        field_of: dict[str, str],
        sealed: dict[str, str],
        misplaced: list[str],
    ) -> Settings:
        """These settings with the sealed variables' values in their place; UnresolvedSecret
        naming every one that does not resolve, and every misplaced one, at once."""
        from app.crypto import resolution  # cold start: only when a variable is sealed

        cloud_key = self.tencentcloud_secret_key.get_secret_value()
        if self.crypto_provider == "kms" and is_sealed(cloud_key):
            variable = next(v for v, name in field_of.items() if name == "tencentcloud_secret_key")
            raise UnresolvedSecret(
                f"refusing to start: {variable}: cannot be sealed with CRYPTO_PROVIDER=kms "
                "(KMS is called with it)"
            )
        problems = dict.fromkeys(misplaced, MISPLACED)
        opened: dict[str, str] = {}
        try:
            if sealed:
                timeout_s = self.secrets_load_timeout_s
                opened = resolution.resolve(sealed, self, self.database_url, timeout_s=timeout_s)
        except resolution.Unresolved as error:
            problems.update(error.problems)
        if problems:
            raise UnresolvedSecret(f"refusing to start: {resolution.Unresolved(problems)}")
        resolved = {**values, **{field_of[v]: value for v, value in opened.items()}}
        try:
            return type(self).model_validate(resolved)
        except ValidationError as error:
            raise UnresolvedSecret(f"refusing to start: {without_values(error)}") from None

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
    def is_production(self) -> bool:
        return self.app_env == "production"

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @functools.cached_property
    def pipeline_allow_list(self) -> frozenset[AllowedHost]:
        return parse_allowed_hosts(self.pipeline_allowed_hosts)

    def allows_upstream(self, host: str, port: int) -> bool:
        """Whether PIPELINE_ALLOWED_HOSTS lets a pipeline call `host` (lower case) on `port`."""
        return any(entry.allows(host, port) for entry in self.pipeline_allow_list)

    @property
    def metrics_push(self) -> tuple[str, float, float]:
        """URL, interval and wait of the metrics push, as `push.pusher_for` takes them."""
        return (
            self.metrics_pushgateway_url.get_secret_value(),
            self.metrics_push_interval_s,
            self.metrics_push_timeout_s,
        )

    @property
    def cors_origins(self) -> frozenset[str]:
        return frozenset(o.strip() for o in self.cors_allow_origins.split(",") if o.strip())

    def production_problems(self) -> list[str]:
        """The dev defaults still in effect, each named so the operator knows what to set."""
        problems = []
        jwt_secret = self.jwt_secret.get_secret_value()
        if jwt_secret == DEV_JWT_SECRET:
            problems.append("JWT_SECRET is the built-in dev secret")
        elif len(jwt_secret) < 64:
            problems.append("JWT_SECRET is shorter than 64 characters")
        elif secret_bits(jwt_secret) < JWT_SECRET_MIN_BITS:
            problems.append("JWT_SECRET is too predictable (use `openssl rand -base64 48`)")
        metrics_token = self.metrics_token.get_secret_value()
        if not metrics_token:
            problems.append("METRICS_TOKEN is unset (GET /metrics would be public)")
        elif secret_bits(metrics_token) < METRICS_TOKEN_MIN_BITS:
            problems.append("METRICS_TOKEN is too predictable (use `openssl rand -hex 32`)")
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
        elif not self.wechat_api_base.startswith("https://"):
            problems.append("WECHAT_API_BASE is not an https:// URL")
        wechat = {"WECHAT_APPID": self.wechat_appid, "WECHAT_SECRET": _plain(self.wechat_secret)}
        if self.wechat_api_base and (unset := [name for name, v in wechat.items() if not v]):
            problems.append(f"WECHAT_API_BASE is set but {', '.join(unset)} not")
        problems.extend(self._payment_problems())
        if self.queue_backend == "local":
            problems.append("QUEUE_BACKEND is local")
        if self.cos_bucket in ("", LOCAL_COS_BUCKET):
            problems.append("COS_BUCKET is unset (the embedded store's bucket)")
        # Both are plain-http stand-ins for the providers' own hosts, for tests.
        if self.cos_endpoint:
            problems.append("COS_ENDPOINT is set (plain http, for tests only)")
        if self.tencentcloud_api_endpoint:
            problems.append("TENCENTCLOUD_API_ENDPOINT is set (plain http, for tests only)")
        if self.crypto_provider == "local":
            problems.append("CRYPTO_PROVIDER is local (its master key sits beside the secrets)")
        elif not self.kms_key_id:
            problems.append("KMS_KEY_ID is unset (CRYPTO_PROVIDER=kms seals under it)")
        if self.local_master_key.get_secret_value():
            problems.append("LOCAL_MASTER_KEY is set (local envelopes are for laptops and tests)")
        internal = sorted(entry.host for entry in self.pipeline_allow_list if entry.is_internal)
        if internal:
            problems.append(
                "PIPELINE_ALLOWED_HOSTS lets pipelines call addresses that are not public: "
                + ", ".join(internal)
            )
        return problems

    def _payment_problems(self) -> list[str]:
        """A channel that is on (its API base or gateway set) must be whole and on https:
        the sandbox's plain-http stand-ins and a half-configured merchant are refused."""
        problems = []
        for base, fields in PAYMENT_CHANNELS.items():
            if not getattr(self, base):
                continue
            text = {name: _plain(getattr(self, name)) for name in fields}
            if not getattr(self, base).startswith("https://"):
                problems.append(f"{base.upper()} is not an https:// URL")
            if unset := [name.upper() for name in fields if not text[name]]:
                problems.append(f"{base.upper()} is set but {', '.join(unset)} not")
            if (notify := text[fields[-1]]) and not notify.startswith("https://"):
                problems.append(f"{base.upper()}'s notify URL is not an https:// URL")
        return problems


def _plain(value: str | SecretStr) -> str:
    return value.get_secret_value() if isinstance(value, SecretStr) else value


class ProductionMisconfigured(RuntimeError):
    pass


class UnresolvedSecret(ProductionMisconfigured):
    """A variable's envelope or reference does not resolve: the instance does not start.
    The message names each such variable and why, never a value."""


def _sealed(field: str, value: str) -> bool:
    return field in SEALABLE and is_sealed(value)


def _misplaced(field: str, value: str) -> bool:
    return field not in SEALABLE and is_sealed(value)


def without_values(error: ValidationError) -> str:
    """What pydantic refused, by variable, without the values: its own message quotes
    them, and an opened secret was sealed for a reason."""
    return "; ".join(
        f"{'.'.join(map(str, e['loc'])).upper()}: {e['msg']}"
        for e in error.errors(include_input=False, include_url=False)
    )


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
