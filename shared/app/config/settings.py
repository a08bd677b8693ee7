"""The settings' one object: every variable of the API contract's configuration table, as a
field whose upper-cased name is the variable (`database_url` <- DATABASE_URL; the fields
read from other or several names are in app.config.variables), validated and converted by
pydantic (plain `BaseModel`: pydantic-settings would add ~50 ms to every cold start for
features nothing here uses). The defaults are the embedded default that `make run` starts
on; `APP_ENV=production` refuses to start while any of them is still in effect
(app.config.production)."""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Mapping
from typing import Any, Literal
from urllib.parse import urlsplit

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
from app.config import sealed, variables
from app.config.defaults import DEV_JWT_SECRET, DEV_LOCAL_MASTER_KEY, LOCAL_COS_BUCKET, LOCAL_DIR
from app.config.refusals import UnresolvedSecret, without_values
from app.crypto import is_sealed

# An Alipay PID, the id of a merchant's account: `2088` and 12 digits.
ALIPAY_PID = re.compile(r"2088[0-9]{12}")


class Settings(BaseModel):
    # A settings error is logged at load: it names the field, never its value (a plain
    # REDIS_URL or DATABASE_URL carries a password).
    model_config = ConfigDict(extra="ignore", frozen=True, hide_input_in_errors=True)

    app_env: Literal["local", "test", "production"] = "local"
    port: int = 8000
    log_level: str = "INFO"

    # Plain text, unlike the other secrets (every adapter reads them as URLs), so kept out of
    # the settings' repr by hand: both may carry a password.
    database_url: str = Field(f"sqlite:///{LOCAL_DIR}/app.db", repr=False)
    # redis:// or rediss:// (one server), redis+cluster:// or rediss+cluster:// (a Redis
    # Cluster, through any of its nodes), memory:// (fakeredis); see app.redis_client.
    redis_url: str = Field("memory://", repr=False)

    db_pool_min: int = Field(10, ge=0)
    db_pool_max: int = Field(100, ge=1)
    db_pool_idle_timeout_s: float = Field(30, gt=0)
    db_pool_acquire_timeout_s: float = Field(10, gt=0)
    # A connection reused after sitting idle this long is checked with SELECT 1 first.
    db_pool_ping_after_idle_s: float = Field(5, ge=0)
    # How long a statement waits for a row lock, or a table's metadata lock, before it fails
    # (MySQL's error 1205): the session's innodb_lock_wait_timeout and lock_wait_timeout,
    # whole seconds. The server's (50 s, a day) outlive an HTTP function (10 s); this lets a
    # wait end as a retry or a 503 before the platform ends it.
    db_lock_wait_timeout_s: int = Field(3, ge=1, le=3600)

    jwt_secret: SecretStr = SecretStr(DEV_JWT_SECRET)
    # Set while signing keys rotate (README, "Secrets and KMS"): tokens signed with it still
    # verify, and SMS codes stored under it still match; nothing new is signed with it.
    jwt_previous_secret: SecretStr = SecretStr("")
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
    # Wrong codes guessed per client network per hour, at sign-in and registration: a code
    # allows a few guesses, and one client could otherwise cycle over many phones' codes.
    sms_code_failures_per_ip_per_hour: int = Field(100, ge=1)

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
    # one connection before closing it for the client to reconnect, under its time limit;
    # how long it keeps one from which nothing has come (the contract's pings are a minute
    # apart at most: two missed and a margin).
    wechat_subscribe_template_id: str = ""
    ws_max_connection_s: float = Field(870, gt=0)
    ws_client_silence_s: float = Field(150, gt=0)

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
    # The merchant's PID: set, a notification (or a query's answer that names one) must name
    # it as the trade's seller_id, as Alipay's guide asks; empty, the seller is not checked.
    alipay_seller_id: str = ""
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
    # Each task made is rows, a start message and its steps' SCF invocations, from a budget
    # every user shares; cancelling gives its quota back, so a user's tasks are limited per
    # hour, far past anyone starting runs by hand.
    tasks_per_user_per_hour: int = Field(300, ge=1)
    # COS: an empty endpoint means the region's own; the local cloud points it at its
    # embedded S3-compatible store (moto) when unset.
    cos_bucket: str = LOCAL_COS_BUCKET
    cos_region: str = "ap-guangzhou"
    cos_endpoint: str = ""
    # Storage (app.storage): outputs larger than this many bytes of JSON go to COS; client
    # uploads up to UPLOAD_MAX_BYTES; what the backend writes lives RESULT_RETENTION_DAYS.
    storage_inline_max_bytes: int = Field(16384, ge=1024, le=1_048_576)
    upload_max_bytes: int = Field(10_485_760, ge=1, le=5 * 1024**3)
    # Each upload given is an object of up to UPLOAD_MAX_BYTES on the bill until cleanup, so
    # a user is given at most this many an hour: two tasks' worth at TASK_UPLOADS_MAX (50)
    # and a fifth again for retries, which a mini-program user (who picks at most 9 images
    # at a time) does not reach; 1.2 GB an hour at most for one account.
    uploads_per_user_per_hour: int = Field(120, ge=1)
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
        read = variables.read(environ, cls.model_fields)
        values = {name: value for name, (_, value) in read.items()}
        settings = cls.model_validate(values)
        if not resolve:
            return settings
        opened = sealed.opened(
            settings, settings.database_url, read, timeout_s=settings.secrets_load_timeout_s
        )
        if not opened:
            return settings
        try:
            return cls.model_validate({**values, **opened})
        except ValidationError as error:
            raise UnresolvedSecret(f"refusing to start: {without_values(error)}") from None

    @field_validator("metrics_pushgateway_url")
    @classmethod
    def _pushgateway_url_holds_its_credentials(cls, url: SecretStr) -> SecretStr:
        text = url.get_secret_value()
        if text and not is_sealed(text) and not _whole_http_url(text):
            raise ValueError(
                "not an http(s)://[user:password@]host[:port][/path] URL "
                "(percent-encode /, ?, # and @ in the user and the password)"
            )
        return url

    @field_validator("alipay_seller_id")
    @classmethod
    def _alipay_seller_id_is_a_pid(cls, value: str) -> str:
        if value and not ALIPAY_PID.fullmatch(value):
            raise ValueError("not an Alipay PID (2088 followed by 12 digits)")
        return value

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
    def jwt_secrets(self) -> list[str]:
        """The secrets tokens and SMS codes are checked with: JWT_SECRET, then
        JWT_PREVIOUS_SECRET while keys rotate. Only the first signs."""
        previous = self.jwt_previous_secret.get_secret_value()
        return [self.jwt_secret.get_secret_value(), *([previous] if previous else [])]

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


def _whole_http_url(text: str) -> bool:
    """Whether `text` is an http(s) URL whose user and password end where its host begins.
    One holding `/`, `?` or `#` unescaped ends the host there instead: its head would be
    read as the host and port, and each failed push's log line would show it."""
    parts = urlsplit(text)
    try:
        parts.port  # noqa: B018 - parsed on access: ValueError for a port that is no number
    except ValueError:
        return False
    rest = text[len(f"{parts.scheme}://{parts.netloc}") :]
    return parts.scheme in ("http", "https") and bool(parts.hostname) and "@" not in rest
