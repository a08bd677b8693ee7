"""The production guard: `APP_ENV=production` refuses to start while any default of the
embedded one is still in effect, a key is too short or too predictable, or a limit would
break the client contract, each named so the operator knows what to set."""

from __future__ import annotations

import math
from collections import Counter
from itertools import pairwise

from pydantic import SecretStr

from app.config.defaults import DEV_JWT_SECRET, LOCAL_COS_BUCKET
from app.config.refusals import ProductionMisconfigured
from app.config.settings import Settings

# The least `secret_bits` production takes: a signing key must withstand offline guessing;
# the metrics token guards read-only numbers and is checked online.
JWT_SECRET_MIN_BITS = 128
METRICS_TOKEN_MIN_BITS = 64
# The client contract (README "Realtime") asks a WebSocket client to ping at least this
# often; a silence limit no longer than that closes clients that keep it (the tests shorten
# it, production may not).
CLIENT_PING_INTERVAL_S = 60

# Each payment channel: the setting that turns it on, and what it then needs (its notify
# URL last). Not ALIPAY_SELLER_ID: checked wherever it is set (README asks production to set
# it), it is not required, so a deployment configured before it existed still starts.
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


def refuse_unfit(settings: Settings) -> None:
    """ProductionMisconfigured unless `settings` may run where they say they are."""
    for variable, secret in _jwt_secrets(settings):
        if settings.app_env != "local" and len(secret) < 64:
            # Short HS256 secrets fall to offline guessing; only a laptop may use one.
            raise ProductionMisconfigured(
                f"{variable} is shorter than 64 characters (APP_ENV={settings.app_env})"
            )
    if settings.app_env == "production":
        found = problems(settings)
        if found:
            raise ProductionMisconfigured(
                "refusing to start with APP_ENV=production: " + "; ".join(found)
            )


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


def problems(settings: Settings) -> list[str]:
    """The dev defaults still in effect, each named so the operator knows what to set."""
    found: list[str] = []
    for variable, secret in _jwt_secrets(settings):
        # The previous secret still verifies tokens: as open to forgery as the current one.
        if secret == DEV_JWT_SECRET:
            found.append(f"{variable} is the built-in dev secret")
        elif len(secret) < 64:
            found.append(f"{variable} is shorter than 64 characters")
        elif secret_bits(secret) < JWT_SECRET_MIN_BITS:
            found.append(f"{variable} is too predictable (use `openssl rand -base64 48`)")
    previous = settings.jwt_previous_secret.get_secret_value()
    if previous and previous == settings.jwt_secret.get_secret_value():
        found.append("JWT_PREVIOUS_SECRET is JWT_SECRET (a rotation needs a new JWT_SECRET)")
    metrics_token = settings.metrics_token.get_secret_value()
    if not metrics_token:
        found.append("METRICS_TOKEN is unset (GET /metrics would be public)")
    elif secret_bits(metrics_token) < METRICS_TOKEN_MIN_BITS:
        found.append("METRICS_TOKEN is too predictable (use `openssl rand -hex 32`)")
    if settings.is_sqlite:
        found.append("DATABASE_URL is SQLite")
    if settings.redis_url.startswith("memory://"):
        found.append("REDIS_URL is memory:// (in-process fakeredis)")
    if settings.sms_provider == "console":
        found.append("SMS_PROVIDER is console")
    elif not (settings.sms_sdk_app_id and settings.sms_sign_name and settings.sms_template_id):
        found.append("SMS_SDK_APP_ID, SMS_SIGN_NAME and SMS_TEMPLATE_ID must all be set")
    if not settings.wechat_api_base:
        found.append("WECHAT_API_BASE is unset (sandbox WeChat login)")
    elif not settings.wechat_api_base.startswith("https://"):
        found.append("WECHAT_API_BASE is not an https:// URL")
    wechat = {
        "WECHAT_APPID": settings.wechat_appid,
        "WECHAT_SECRET": _plain(settings.wechat_secret),
    }
    if settings.wechat_api_base and (unset := [name for name, v in wechat.items() if not v]):
        found.append(f"WECHAT_API_BASE is set but {', '.join(unset)} not")
    found.extend(_payment_problems(settings))
    if settings.queue_backend == "local":
        found.append("QUEUE_BACKEND is local")
    if settings.cos_bucket in ("", LOCAL_COS_BUCKET):
        found.append("COS_BUCKET is unset (the embedded store's bucket)")
    # Both are plain-http stand-ins for the providers' own hosts, for tests.
    if settings.cos_endpoint:
        found.append("COS_ENDPOINT is set (plain http, for tests only)")
    if settings.tencentcloud_api_endpoint:
        found.append("TENCENTCLOUD_API_ENDPOINT is set (plain http, for tests only)")
    if settings.crypto_provider == "local":
        found.append("CRYPTO_PROVIDER is local (its master key sits beside the secrets)")
    elif not settings.kms_key_id:
        found.append("KMS_KEY_ID is unset (CRYPTO_PROVIDER=kms seals under it)")
    if settings.local_master_key.get_secret_value():
        found.append("LOCAL_MASTER_KEY is set (local envelopes are for laptops and tests)")
    if settings.ws_client_silence_s <= CLIENT_PING_INTERVAL_S:
        found.append(
            f"WS_CLIENT_SILENCE_S is {CLIENT_PING_INTERVAL_S} s or less (clients ping once a"
            " minute: it would close those that keep the contract)"
        )
    internal = sorted(entry.host for entry in settings.pipeline_allow_list if entry.is_internal)
    if internal:
        found.append(
            "PIPELINE_ALLOWED_HOSTS lets pipelines call addresses that are not public: "
            + ", ".join(internal)
        )
    return found


def _jwt_secrets(settings: Settings) -> list[tuple[str, str]]:
    """The signing secrets set, each with its variable (the previous one only while set)."""
    return list(zip(("JWT_SECRET", "JWT_PREVIOUS_SECRET"), settings.jwt_secrets, strict=False))


def _payment_problems(settings: Settings) -> list[str]:
    """A channel that is on (its API base or gateway set) must be whole and on https:
    the sandbox's plain-http stand-ins and a half-configured merchant are refused."""
    found: list[str] = []
    for base, fields in PAYMENT_CHANNELS.items():
        if not getattr(settings, base):
            continue
        text = {name: _plain(getattr(settings, name)) for name in fields}
        if not getattr(settings, base).startswith("https://"):
            found.append(f"{base.upper()} is not an https:// URL")
        if unset := [name.upper() for name in fields if not text[name]]:
            found.append(f"{base.upper()} is set but {', '.join(unset)} not")
        if (notify := text[fields[-1]]) and not notify.startswith("https://"):
            found.append(f"{base.upper()}'s notify URL is not an https:// URL")
    return found


def _plain(value: str | SecretStr) -> str:
    return value.get_secret_value() if isinstance(value, SecretStr) else value
