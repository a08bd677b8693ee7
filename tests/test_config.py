"""APP_ENV=production refuses to start on any dev default, and says which; a fully
configured production environment starts."""

from __future__ import annotations

import importlib.util
import secrets
from typing import Any

import pytest
from pydantic import ValidationError

from app.cloud_clients import CloudAccess
from app.config import ProductionMisconfigured, Settings, get_settings, production
from app.config.defaults import DEV_JWT_SECRET
from app.http import http_handler
from app.vault import store as vault_store
from infra.deploy import settings as deploy_settings
from tests.support.functions import FUNCTIONS
from tests.support.payments import PRODUCTION_PAYMENT_ENV
from tests.support.settings import settings_env

# What an operator sets for production. A new dev default refused in production belongs in
# DEV_DEFAULTS below, and the value that replaces it here.
PRODUCTION_ENV: dict[str, str | None] = {
    "APP_ENV": "production",
    "COS_ENDPOINT": None,  # the test run's bucket (FakeCos) is plain http
    "JWT_SECRET": secrets.token_urlsafe(64),
    "METRICS_TOKEN": secrets.token_hex(32),
    "DATABASE_URL": "mysql+pymysql://app:pw@db.internal:3306/app",
    "REDIS_URL": "redis://redis.internal:6379/0",
    "SMS_PROVIDER": "tencent",
    "SMS_SDK_APP_ID": "1400000000",
    "SMS_SIGN_NAME": "Example",
    "SMS_TEMPLATE_ID": "100001",
    "WECHAT_API_BASE": "https://api.weixin.qq.com",
    "WECHAT_APPID": "wx0000000000000000",
    "WECHAT_SECRET": secrets.token_hex(16),
    "COS_BUCKET": "ai-platform-1250000000",
    "QUEUE_BACKEND": "scf",
    "PIPELINE_ALLOWED_HOSTS": "ai.example.com",
    "CRYPTO_PROVIDER": "kms",
    "KMS_KEY_ID": "2c9e58e6-9f1a-11ef-8e65-52540089bc41",
    **PRODUCTION_PAYMENT_ENV,
}

# Each dev default: the variables that put it back, and the words the refusal must name.
DEV_DEFAULTS: dict[str, tuple[dict[str, str | None], str]] = {
    "unset jwt secret": ({"JWT_SECRET": None}, "JWT_SECRET"),
    "built-in jwt secret": ({"JWT_SECRET": DEV_JWT_SECRET}, "JWT_SECRET"),
    "short jwt secret": ({"JWT_SECRET": "s" * 63}, "JWT_SECRET"),
    "sqlite": ({"DATABASE_URL": None}, "DATABASE_URL"),
    "sqlite file": ({"DATABASE_URL": "sqlite:////tmp/x.db"}, "DATABASE_URL"),
    "fakeredis": ({"REDIS_URL": None}, "REDIS_URL"),
    "console sms": ({"SMS_PROVIDER": None}, "SMS_PROVIDER"),
    "tencent sms without template": ({"SMS_TEMPLATE_ID": None}, "SMS_TEMPLATE_ID"),
    "sandbox wechat": ({"WECHAT_API_BASE": None}, "WECHAT_API_BASE"),
    "local queue": ({"QUEUE_BACKEND": None}, "QUEUE_BACKEND"),
    "pipelines calling localhost": ({"PIPELINE_ALLOWED_HOSTS": None}, "PIPELINE_ALLOWED_HOSTS"),
    # Each one below was accepted before: a secret or an allow-list can be long enough and
    # well formed, and still be weak or point inside.
    "jwt secret of one letter": ({"JWT_SECRET": "a" * 64}, "JWT_SECRET is too predictable"),
    "jwt secret repeating a pattern": (
        {"JWT_SECRET": "Tr0ub4dor&3-" * 6},
        "JWT_SECRET is too predictable",
    ),
    # The previous secret still verifies tokens: held to the same rules.
    "built-in previous jwt secret": (
        {"JWT_PREVIOUS_SECRET": DEV_JWT_SECRET},
        "JWT_PREVIOUS_SECRET is the built-in dev secret",
    ),
    "short previous jwt secret": (
        {"JWT_PREVIOUS_SECRET": "s" * 63},
        "JWT_PREVIOUS_SECRET is shorter than 64 characters",
    ),
    "previous jwt secret of one letter": (
        {"JWT_PREVIOUS_SECRET": "a" * 64},
        "JWT_PREVIOUS_SECRET is too predictable",
    ),
    "previous jwt secret the current one": (
        {"JWT_PREVIOUS_SECRET": PRODUCTION_ENV["JWT_SECRET"]},
        "JWT_PREVIOUS_SECRET is JWT_SECRET",
    ),
    "jwt secret walking the keyboard": (
        {"JWT_SECRET": "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_"},
        "JWT_SECRET is too predictable",
    ),
    "allow-list with the metadata service": (
        {"PIPELINE_ALLOWED_HOSTS": "ai.example.com,169.254.169.254"},
        "169.254.169.254",
    ),
    "allow-list with a private address": (
        {"PIPELINE_ALLOWED_HOSTS": "ai.example.com,10.0.0.1"},
        "10.0.0.1",
    ),
    "allow-list with a private address and a port": (
        {"PIPELINE_ALLOWED_HOSTS": "ai.example.com,192.168.1.20:8080"},
        "192.168.1.20",
    ),
    "allow-list with loopback ipv6": ({"PIPELINE_ALLOWED_HOSTS": "[::1]:443"}, "::1"),
    "allow-list with mapped loopback": (
        {"PIPELINE_ALLOWED_HOSTS": "::ffff:127.0.0.1"},
        "127.0.0.1",
    ),
    "allow-list with the metadata name": (
        {"PIPELINE_ALLOWED_HOSTS": "metadata.tencentyun.com"},
        "metadata.tencentyun.com",
    ),
    "allow-list with a single-label name": ({"PIPELINE_ALLOWED_HOSTS": "intranet"}, "intranet"),
    # What the C resolver reads as an internal IPv4 address, and IPv6 forms carrying one.
    **{
        f"allow-list with {entry}": ({"PIPELINE_ALLOWED_HOSTS": f"ai.example.com,{entry}"}, named)
        for entry, named in [
            ("127.1", "127.1"),
            ("10.1:8080", "10.1"),
            ("0177.0.0.1", "0177.0.0.1"),
            ("169.254.169.254.", "169.254.169.254."),
            ("[::a9fe:a9fe]", "::a9fe:a9fe"),
            ("[::ffff:0:a9fe:a9fe]", "::ffff:0:a9fe:a9fe"),
            ("[64:ff9b:1::a9fe:a9fe]", "64:ff9b:1::a9fe:a9fe"),
        ]
    },
    "plain http wechat": ({"WECHAT_API_BASE": "http://api.weixin.qq.com"}, "WECHAT_API_BASE"),
    # WeChat's API on, and every login sent without the mini-program's appid or secret.
    "wechat without its app": (
        {"WECHAT_APPID": None, "WECHAT_SECRET": None},
        "WECHAT_API_BASE is set but WECHAT_APPID, WECHAT_SECRET not",
    ),
    "wechat without its secret": ({"WECHAT_SECRET": ""}, "but WECHAT_SECRET not"),
    # The laptop's bucket name: in COS, another account's.
    "embedded store's bucket": ({"COS_BUCKET": None}, "COS_BUCKET is unset"),
    "empty bucket": ({"COS_BUCKET": ""}, "COS_BUCKET is unset"),
    "cos test endpoint": ({"COS_ENDPOINT": "cos.example.com:80"}, "COS_ENDPOINT"),
    "cloud api test endpoint": (
        {"TENCENTCLOUD_API_ENDPOINT": "api.example.com:80"},
        "TENCENTCLOUD_API_ENDPOINT",
    ),
    "local crypto provider": ({"CRYPTO_PROVIDER": None}, "CRYPTO_PROVIDER is local"),
    "explicit local crypto provider": ({"CRYPTO_PROVIDER": "local"}, "CRYPTO_PROVIDER"),
    "kms without a key": ({"KMS_KEY_ID": None}, "KMS_KEY_ID is unset"),
    "local master key beside kms": (
        {"LOCAL_MASTER_KEY": "q83vEjRWeJCrze8SNFZ4kKvN7xI0VniQq83vEjRWeJA="},
        "LOCAL_MASTER_KEY is set",
    ),
    "wechat pay sandbox": (
        {"WECHATPAY_API_BASE": "http://127.0.0.1:9100"},
        "WECHATPAY_API_BASE is not an https:// URL",
    ),
    "alipay sandbox": (
        {"ALIPAY_GATEWAY": "http://127.0.0.1:9200/gateway.do"},
        "ALIPAY_GATEWAY is not an https:// URL",
    ),
    "wechat pay without its apiv3 key": (
        {"WECHATPAY_APIV3_KEY": None},
        "WECHATPAY_API_BASE is set but WECHATPAY_APIV3_KEY not",
    ),
    "alipay without keys": (
        {"ALIPAY_PRIVATE_KEY": None, "ALIPAY_PUBLIC_KEY": None},
        "ALIPAY_GATEWAY is set but ALIPAY_PRIVATE_KEY, ALIPAY_PUBLIC_KEY not",
    ),
    "plain http notify url": (
        {"WECHATPAY_NOTIFY_URL": "http://api.example.com/payments/wechat/notify"},
        "WECHATPAY_API_BASE's notify URL is not an https:// URL",
    ),
    "ws silence within the ping interval": (
        {"WS_CLIENT_SILENCE_S": "60"},
        "WS_CLIENT_SILENCE_S is 60 s or less",
    ),
    "open metrics": ({"METRICS_TOKEN": None}, "METRICS_TOKEN"),
    "predictable metrics token": ({"METRICS_TOKEN": "metrics" * 4}, "METRICS_TOKEN"),
}


def load_function(name: str) -> Any:
    """Import a function's index.py afresh, as a new SCF instance would."""
    spec = importlib.util.spec_from_file_location(
        f"scf_fresh_{name}_{secrets.token_hex(4)}", FUNCTIONS / name / "index.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main_handler


def test_a_fully_configured_production_environment_starts() -> None:
    with settings_env(**PRODUCTION_ENV):
        settings = get_settings()
        assert settings.app_env == "production"
        assert production.problems(settings) == []


def test_a_production_environment_rotating_its_jwt_secret_starts() -> None:
    with settings_env(**PRODUCTION_ENV, JWT_PREVIOUS_SECRET=secrets.token_urlsafe(64)):
        settings = get_settings()
        assert settings.jwt_previous_secret.get_secret_value()
        assert production.problems(settings) == []
        assert callable(load_function("health"))


@pytest.mark.parametrize("case", list(DEV_DEFAULTS))
def test_each_dev_default_is_refused_and_named(case: str) -> None:
    overrides, named = DEV_DEFAULTS[case]
    with settings_env(**{**PRODUCTION_ENV, **overrides}):
        with pytest.raises(ProductionMisconfigured) as refused:
            get_settings()
        assert named in str(refused.value)
        # The secret itself never appears in the message.
        for variable in ("JWT_SECRET", "JWT_PREVIOUS_SECRET", "LOCAL_MASTER_KEY"):
            secret = overrides.get(variable)
            if secret:
                assert secret not in str(refused.value)


def test_every_dev_default_at_once_is_named_in_one_refusal() -> None:
    everything_default = {key: None for key in PRODUCTION_ENV if key != "APP_ENV"}
    with (
        settings_env(**{**everything_default, "APP_ENV": "production"}),
        pytest.raises(ProductionMisconfigured) as refused,
    ):
        get_settings()
    message = str(refused.value)
    for name in [
        "JWT_SECRET",
        "DATABASE_URL",
        "REDIS_URL",
        "SMS_PROVIDER",
        "WECHAT_API_BASE",
        "QUEUE_BACKEND",
        "PIPELINE_ALLOWED_HOSTS",
        "CRYPTO_PROVIDER",
        "COS_BUCKET",
    ]:
        assert name in message, name


def test_a_function_refuses_to_load_or_be_built_in_misconfigured_production() -> None:
    with settings_env(**{**PRODUCTION_ENV, "REDIS_URL": None}):
        with pytest.raises(ProductionMisconfigured, match="REDIS_URL"):
            load_function("health")
        from app.api.health import get_health

        with pytest.raises(ProductionMisconfigured, match="REDIS_URL"):
            http_handler(get_health)


def test_local_mode_starts_on_the_embedded_default() -> None:
    with settings_env(**dict.fromkeys(PRODUCTION_ENV)):
        settings = get_settings()
        assert settings.app_env == "local"
        assert settings.is_sqlite and settings.redis_url == "memory://"
        assert "JWT_SECRET is the built-in dev secret" in production.problems(settings)


@pytest.mark.parametrize(
    ("variable", "value", "field"),
    [
        ("REDIS_URL", "redis+cluster://:Hunter2pw@10.0.0.5:6379/1", "redis_url"),
        ("DB_POOL_MAX", "Hunter2pw", "db_pool_max"),
        # A password's `/`, `?` or `#` would end the host there: its head taken for the host
        # and port, and shown by each failed push's log line.
        *[
            ("METRICS_PUSHGATEWAY_URL", f"http://1250000000:Hunter2pw{c}x@10.0.0.9:9091", field)
            for c, field in dict.fromkeys("/?#", "metrics_pushgateway_url").items()
        ],
    ],
)
def test_a_settings_error_names_the_field_never_its_value(
    variable: str, value: str, field: str
) -> None:
    # The error is logged at load: a plain REDIS_URL carries its password.
    with pytest.raises(ValidationError) as refused:
        Settings.from_environ({variable: value})
    assert field in str(refused.value)
    assert "Hunter2pw" not in str(refused.value)


@pytest.mark.parametrize(
    "value",
    [
        "208800000000000",  # 11 digits after 2088
        "20880000000000000",
        "2089000000000000",
        "2088 000000000000",
        " 2088000000000000",
        "2088000000000000\n",
        "\uff12\uff10\uff18\uff18000000000000",  # 2088 in full-width digits, which \d takes
        "2021000000000001",  # an app id, not a PID
    ],
)
def test_an_alipay_seller_id_that_is_no_pid_refuses_the_settings(value: str) -> None:
    with pytest.raises(ValidationError) as refused:
        Settings.from_environ({"ALIPAY_SELLER_ID": value})
    assert "alipay_seller_id" in str(refused.value)
    assert "2088 followed by 12 digits" in str(refused.value)


def test_an_alipay_seller_id_is_a_pid_or_unset() -> None:
    assert Settings.from_environ({"ALIPAY_SELLER_ID": "2088102146225135"}).alipay_seller_id
    assert Settings.from_environ({"ALIPAY_SELLER_ID": ""}).alipay_seller_id == ""
    assert Settings.from_environ({}).alipay_seller_id == ""


def test_no_secret_is_in_the_repr_of_what_holds_one() -> None:
    """A repr reaches a log line or a traceback's locals whole: the settings, the Tencent
    Cloud credentials built from them, the deployer's and a step's filled headers say
    which fields they hold, never a password, a key or a token."""
    settings = Settings.from_environ(
        {
            "DATABASE_URL": "mysql+pymysql://app:Hunter2db@10.0.0.5:3306/app",
            "REDIS_URL": "redis://:Hunter2redis@10.0.0.6:6379/0",
            "JWT_SECRET": "Hunter2jwt" + secrets.token_hex(32),
            "TENCENTCLOUD_SECRET_KEY": "Hunter2cloud",
            "TENCENTCLOUD_SESSION_TOKEN": "Hunter2token",
        }
    )
    deployer = deploy_settings.Settings(
        "AKID", "Hunter2deploy", "Hunter2token", "ap-guangzhou", "b-1250000000", None, None
    )
    filled = vault_store.Filled({"Authorization": "Bearer Hunter2sent"}, {"K": "Hunter2sent"})
    for holder in (settings, CloudAccess.of(settings), deployer, filled):
        shown = f"{holder!r} {holder!s}"
        assert "Hunter2" not in shown, shown


def test_settings_are_restored_after_each_block() -> None:
    before = get_settings()
    with settings_env(APP_ENV="production"):
        pass
    after = get_settings()
    assert after.app_env == before.app_env == "test"
    assert after.database_url == before.database_url
