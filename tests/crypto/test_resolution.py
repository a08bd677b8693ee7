"""Settings resolve envelopes and `secret:` references once, before anything serves: the
values arrive in their fields, and anything that does not resolve (tampered, moved to
another variable, an unknown key, another master key, a secret not stored, an unreadable
secrets table) stops the settings, and a function's load in a fresh interpreter, naming
each variable and the reason, never the value."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys

import pytest
from sqlalchemy import select

from app.config import Settings, UnresolvedSecret, get_settings
from app.crypto import envelopes
from app.db.engine import get_engine
from app.db.tables import secrets as secrets_table
from infra import seal
from tests.crypto.conftest import keys_for, new_master_key
from tests.fakes.kms import FakeKms
from tests.support.functions import FUNCTIONS, ROOT
from tests.support.net import closed_port
from tests.support.settings import settings_env

JWT = secrets.token_urlsafe(64)
DATABASE_URL = os.environ["DATABASE_URL"]


def sealed(env: dict[str, str], value: str, name: str) -> str:
    return envelopes.seal(value.encode(), name, keys_for(env))


def put_secret(env: dict[str, str], name: str, value: str, context: str | None = None) -> None:
    envelope = sealed(env, value, context or name)
    seal.store(DATABASE_URL, name, envelope)


def refusal(env: dict[str, str]) -> str:
    with pytest.raises(UnresolvedSecret) as refused:
        Settings.from_environ(env)
    return str(refused.value)


@pytest.mark.parametrize("provider", ["local", "kms"])
def test_envelopes_resolve_into_their_fields(
    provider: str, local_env: dict[str, str], kms_env: dict[str, str]
) -> None:
    env = local_env if provider == "local" else kms_env
    redis_url = "redis://:pw@10.0.0.5:6379/3"
    settings = Settings.from_environ(
        {
            **env,
            "JWT_SECRET": sealed(env, JWT, "JWT_SECRET"),
            "WECHAT_SECRET": sealed(env, "wx-secret", "WECHAT_SECRET"),
            "DATABASE_URL": sealed(env, DATABASE_URL, "DATABASE_URL"),
            "REDIS_URL": sealed(env, redis_url, "REDIS_URL"),
            "METRICS_TOKEN": "plain-token-stays-plain",
        }
    )
    assert settings.jwt_secret.get_secret_value() == JWT
    assert settings.wechat_secret.get_secret_value() == "wx-secret"
    assert settings.database_url == DATABASE_URL
    assert settings.redis_url == redis_url
    assert settings.metrics_token.get_secret_value() == "plain-token-stays-plain"


def test_jwt_secrets_envelope_moves_to_jwt_previous_secret_as_it_is(
    local_env: dict[str, str],
) -> None:
    """A rotation sets JWT_PREVIOUS_SECRET to what JWT_SECRET held: its envelope opens there,
    with no one opening it to seal it again; any other variable's still does not."""
    new = secrets.token_urlsafe(64)
    settings = Settings.from_environ(
        {
            **local_env,
            "JWT_SECRET": sealed(local_env, new, "JWT_SECRET"),
            "JWT_PREVIOUS_SECRET": sealed(local_env, JWT, "JWT_SECRET"),
        }
    )
    assert settings.jwt_secret.get_secret_value() == new
    assert settings.jwt_previous_secret.get_secret_value() == JWT
    moved = {**local_env, "JWT_PREVIOUS_SECRET": sealed(local_env, JWT, "WECHAT_SECRET")}
    assert "JWT_PREVIOUS_SECRET: the envelope does not open" in refusal(moved)


def test_a_reference_reads_the_secrets_table_through_an_enveloped_database_url(
    kms: FakeKms, kms_env: dict[str, str], stored_names: list[str]
) -> None:
    stored_names += ["METRICS_TOKEN_2026", "PAY_KEY"]
    token, pem = (
        secrets.token_hex(32),
        "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----",
    )
    put_secret(kms_env, "METRICS_TOKEN_2026", token)
    put_secret(kms_env, "PAY_KEY", pem)
    settings = Settings.from_environ(
        {
            **kms_env,
            "DATABASE_URL": sealed(kms_env, DATABASE_URL, "DATABASE_URL"),
            "METRICS_TOKEN": "secret:METRICS_TOKEN_2026",
            "WECHAT_SECRET": "secret:PAY_KEY",
        }
    )
    assert settings.metrics_token.get_secret_value() == token
    assert settings.wechat_secret.get_secret_value() == pem
    assert settings.database_url == DATABASE_URL


def test_secret_put_replaces_a_row_and_counts_its_versions(
    local_env: dict[str, str], stored_names: list[str]
) -> None:
    stored_names.append("ROTATED")
    put_secret(local_env, "ROTATED", "first")
    put_secret(local_env, "ROTATED", "second")
    with get_engine().connect() as conn:
        row = conn.execute(select(secrets_table).where(secrets_table.c.name == "ROTATED")).one()
    assert row.version == 2 and row.updated_at >= row.created_at
    assert row.key_id == keys_for(local_env).key_id
    assert envelopes.open(row.envelope, "ROTATED", keys_for(local_env)) == b"second"
    resolved = Settings.from_environ({**local_env, "JWT_SECRET": "secret:ROTATED"})
    assert resolved.jwt_secret.get_secret_value() == "second"


def test_what_does_not_resolve_is_named_all_at_once_without_values(
    local_env: dict[str, str], stored_names: list[str]
) -> None:
    stored_names.append("MISPLACED")
    put_secret(local_env, "MISPLACED", "the-misplaced-value", context="ELSEWHERE")
    jwt_envelope = sealed(local_env, JWT, "JWT_SECRET")
    message = refusal(
        {
            **local_env,
            "JWT_SECRET": sealed(local_env, JWT, "WECHAT_SECRET"),
            "WECHAT_SECRET": jwt_envelope[:-3] + ("AAA" if jwt_envelope[-3:] != "AAA" else "BBB"),
            "METRICS_TOKEN": "secret:NOT_STORED",
            "REDIS_URL": "secret:lower_case",
            "METRICS_PUSHGATEWAY_URL": "secret:MISPLACED",
        }
    )
    assert "JWT_SECRET: the envelope does not open: sealed for another name" in message
    assert "WECHAT_SECRET: the envelope does not open:" in message
    assert "METRICS_TOKEN: secret NOT_STORED is not stored" in message
    assert "REDIS_URL: a reference is secret:NAME" in message
    assert "METRICS_PUSHGATEWAY_URL: secret MISPLACED does not open" in message
    assert JWT not in message and "the-misplaced-value" not in message


def test_an_envelope_of_another_master_key_or_an_unknown_kms_key_is_refused(
    kms: FakeKms, local_env: dict[str, str]
) -> None:
    other = {**local_env, "LOCAL_MASTER_KEY": new_master_key()}
    message = refusal({**other, "JWT_SECRET": sealed(local_env, JWT, "JWT_SECRET")})
    assert "JWT_SECRET: the envelope does not open: unknown key local-" in message
    gone = kms.create_key()
    envelope = sealed(kms.env(gone), JWT, "JWT_SECRET")
    del kms.keys[gone]
    message = refusal({**kms.env(kms.create_key()), "JWT_SECRET": envelope})
    assert f"JWT_SECRET: the envelope does not open: unknown key {gone}" in message
    assert JWT not in message


def test_database_url_cannot_be_a_reference(local_env: dict[str, str]) -> None:
    message = refusal({**local_env, "DATABASE_URL": "secret:DATABASE_URL"})
    assert message == (
        "refusing to start: DATABASE_URL: cannot be a secret: reference "
        "(secrets are read through it)"
    )


def test_an_unreadable_secrets_table_is_named_without_the_url(local_env: dict[str, str]) -> None:
    url = "mysql+pymysql://app:hunter2-password@127.0.0.1:1/app"
    message = refusal({**local_env, "DATABASE_URL": url, "JWT_SECRET": "secret:JWT"})
    assert "JWT_SECRET: the secrets table could not be read (OperationalError 2003)" in message
    assert "hunter2" not in message
    driverless = "postgresql://app:hunter2-password@127.0.0.1/app"  # no driver installed
    message = refusal({**local_env, "DATABASE_URL": driverless, "JWT_SECRET": "secret:JWT"})
    assert "JWT_SECRET: the secrets table could not be read (ModuleNotFoundError)" in message
    assert "hunter2" not in message
    bad = sealed(local_env, url, "WECHAT_SECRET")
    message = refusal({**local_env, "DATABASE_URL": bad, "JWT_SECRET": "secret:JWT"})
    assert "JWT_SECRET: not read: DATABASE_URL does not resolve" in message


@pytest.mark.parametrize("tail", ["?Tail9x=1", "?ssl=Tail9x"], ids=["argument", "ssl"])
def test_a_password_whose_tail_reaches_the_drivers_arguments_is_named_without_it(
    local_env: dict[str, str], tail: str
) -> None:
    """A password holding an unescaped `@` and `?` leaves its tail in the URL's query, which
    the driver takes as its arguments and refuses with errors of its own (TypeError,
    AttributeError), not SQLAlchemy's: named by class like the others, never raised with
    the tail in its text for SCF to log with the load's traceback."""
    url = f"mysql+pymysql://app:hunter2@pw{tail}@127.0.0.1:{closed_port()}/app"
    message = refusal({**local_env, "DATABASE_URL": url, "JWT_SECRET": "secret:JWT"})
    assert "JWT_SECRET: the secrets table could not be read (" in message
    assert "Tail9x" not in message and "hunter2" not in message


def test_a_value_refused_after_opening_is_named_without_quoting_it(
    local_env: dict[str, str],
) -> None:
    url = "redis+cluster://:hunter2-password@10.0.0.5:6379/2"
    message = refusal({**local_env, "REDIS_URL": sealed(local_env, url, "REDIS_URL")})
    assert "REDIS_URL: Value error, a Redis Cluster has database 0 only" in message
    assert "hunter2" not in message
    binary = envelopes.seal(b"\xff\xfe", "JWT_SECRET", keys_for(local_env))
    assert "not UTF-8 text" in refusal({**local_env, "JWT_SECRET": binary})


def test_the_cloud_key_kms_is_called_with_cannot_be_sealed_under_kms(
    kms_env: dict[str, str], local_env: dict[str, str]
) -> None:
    envelope = sealed(local_env, "cloud-key", "TENCENTCLOUD_SECRET_KEY")
    message = refusal({**kms_env, "TENCENTCLOUD_SECRET_KEY": envelope})
    assert "TENCENTCLOUD_SECRET_KEY: cannot be sealed with CRYPTO_PROVIDER=kms" in message
    opened = Settings.from_environ({**local_env, "TENCENTCLOUD_SECRET_KEY": envelope})
    assert opened.tencentcloud_secret_key.get_secret_value() == "cloud-key"


def test_get_settings_stops_on_an_envelope_that_does_not_open(local_env: dict[str, str]) -> None:
    envelope = sealed(local_env, JWT, "JWT_SECRET")
    with settings_env(**local_env, JWT_SECRET=envelope):
        assert get_settings().jwt_secret.get_secret_value() == JWT
    with (
        settings_env(**{**local_env, "LOCAL_MASTER_KEY": new_master_key()}, JWT_SECRET=envelope),
        pytest.raises(UnresolvedSecret, match="JWT_SECRET: the envelope does not open"),
    ):
        get_settings()


CHILD = "import index\nprint('served')"


@pytest.mark.parametrize("case", ["tampered", "moved", "unknown key", "other master key"])
def test_a_function_does_not_load_on_an_envelope_that_does_not_open(
    case: str, kms: FakeKms, kms_env: dict[str, str], local_env: dict[str, str]
) -> None:
    env, envelope = local_env, sealed(local_env, JWT, "JWT_SECRET")
    if case == "tampered":
        envelope = envelope[:30] + ("A" if envelope[30] != "A" else "B") + envelope[31:]
    elif case == "moved":
        envelope = sealed(local_env, JWT, "WECHAT_SECRET")
    elif case == "unknown key":
        gone = kms.create_key()
        env, envelope = kms_env, sealed(kms.env(gone), JWT, "JWT_SECRET")
        del kms.keys[gone]
    else:
        env = {**local_env, "LOCAL_MASTER_KEY": new_master_key()}
    child = subprocess.run(
        [sys.executable, "-c", CHILD],
        cwd=FUNCTIONS / "auth-login",
        env={
            **env,
            "PATH": os.environ.get("PATH", ""),
            "PYTHONPATH": f"{FUNCTIONS / 'auth-login'}{os.pathsep}{ROOT / 'shared'}",
            "APP_ENV": "test",
            "DATABASE_URL": DATABASE_URL,
            "JWT_SECRET": envelope,
        },
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert child.returncode != 0 and "served" not in child.stdout
    last = child.stderr.strip().splitlines()[-1]
    assert last.startswith("app.config.UnresolvedSecret: refusing to start: JWT_SECRET:"), last
    assert JWT not in child.stderr


def test_an_envelope_or_reference_where_none_is_opened_stops_the_settings(
    local_env: dict[str, str],
) -> None:
    """A variable that is no key or secret would take `enc:v1:...` as its value: an issuer,
    a merchant id or the cloud key id signing and calling with the envelope's text."""
    message = refusal(
        {
            **local_env,
            "JWT_ISSUER": sealed(local_env, "issuer", "JWT_ISSUER"),
            "TENCENTCLOUD_SECRETID": "secret:CLOUD_ID",
            "WECHATPAY_MCHID": sealed(local_env, "1900000001", "WECHATPAY_MCHID"),
            "JWT_SECRET": sealed(local_env, JWT, "JWT_SECRET"),
            "WECHAT_SECRET": sealed(local_env, "wx-secret", "METRICS_TOKEN"),
        }
    )
    for variable in ("JWT_ISSUER", "TENCENTCLOUD_SECRETID", "WECHATPAY_MCHID"):
        assert f"{variable}: holds an envelope or a secret: reference" in message
    # Named at once with what does not resolve; what does is not named.
    assert "WECHAT_SECRET: the envelope does not open: sealed for another name" in message
    assert "JWT_SECRET" not in message and "wx-secret" not in message
    unsealed = Settings.from_environ({**local_env, "JWT_ISSUER": "enc:v1:x"}, resolve=False)
    assert unsealed.jwt_issuer == "enc:v1:x"  # the seal command reads the settings as spelled
