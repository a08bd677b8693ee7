"""The import budget: which heavy packages each function loads when SCF imports its
`index.py`, pinned per function (deterministic: what is imported, never how long it takes).

A cold start is the import plus the first invocation; this pins the first half, so a
change that drags a heavy package into a function's load shows up here, by name. A package
a function needs only on some requests is imported by the code that needs it, with the
reason on the line (`# cold start: ...`). When a change moves a package in or out of a
function's load on purpose, update BUDGET; `bench/cold_start.py` measures what it costs.
"""

from __future__ import annotations

import base64
import json
import secrets

import pytest

from app.config import Settings
from app.crypto import envelopes, providers
from tests.fakes.kms import FakeKms
from tests.fakes.tencentcloud import FakeTencentCloud
from tests.support.functions import FUNCTIONS, in_fresh_instance

HEAVY = (
    "Cryptodome",
    "OpenSSL",
    "alembic",
    "alipay",
    "bcrypt",
    "cryptography",
    "fakeredis",
    "jwt",
    "prometheus_client",
    "pydantic",
    "pydantic_settings",
    "pymysql",
    "qcloud_cos",
    "redis",
    "requests",
    "sqlalchemy",
    "swagger_ui_bundle",
    "tencentcloud",
    "urllib3",
    "wechatpayv3",
    "yaml",
)

# Every function loads pydantic (settings, models). Redis's client comes with the first
# request (app.redis_client), prometheus_client only where metrics leave the process.
# `cryptography` and the KMS SDK (`tencentcloud`) only when a setting holds an envelope.
# The payment SDKs (wechatpayv3, alipay and what it signs with) only when a channel is used.
BASE = {"pydantic"}
SIGN_IN = BASE | {"bcrypt", "jwt", "sqlalchemy"}
# Tokens and users, no passwords (bcrypt came to them only through PyJWT's `cryptography`).
ADMIN_USERS = BASE | {"jwt", "sqlalchemy"}
DB = BASE | {"sqlalchemy"}
BUDGET: dict[str, set[str]] = {
    # no database layer at load: served from Redis or from the layer's own files
    "health": BASE,
    "openapi": BASE,
    "docs": BASE,
    "metrics": BASE | {"prometheus_client"},
    "users-me": BASE,
    "pipelines-list": BASE,
    "admin-pipelines-put": BASE,
    "admin-jobs-run": BASE,
    "admin-secrets-list": BASE,
    "admin-secrets-name": BASE,
    "plans-list": BASE,
    "admin-plans-put": BASE,
    "fallback": BASE,
    # sign-in: passwords, tokens, sessions, users
    "auth-sms-code": SIGN_IN,
    "auth-register": SIGN_IN,
    "auth-login": SIGN_IN,
    "auth-wechat-login": SIGN_IN,
    "auth-refresh": SIGN_IN,
    "auth-logout": SIGN_IN,
    "auth-logout-all": SIGN_IN,
    "admin-users-list": ADMIN_USERS,
    "admin-users-id": ADMIN_USERS,
    # the database
    "tasks": DB,
    "tasks-id": DB,
    # the bucket's SDK only when an upload is signed
    "uploads": BASE,
    "pipeline-worker": DB,
    "saga-sweeper": DB,
    "cos-cleanup": DB,
    "invite-refill": DB,
    "orders": DB,
    "orders-id": DB,
    "payments-wechat-notify": DB,
    "payments-alipay-notify": DB,
    "order-reconcile": DB,
    "db-migrate": DB | {"alembic"},
    # the WebSocket web function: the handshake's token check; Redis with the first connection
    "ws": BASE | {"jwt"},
}

# In a fresh interpreter, like an SCF instance: the function's folder and the layer only.
CHILD = """
import json, sys
import index
heavy = json.loads(sys.argv[1])
print(json.dumps(sorted(name for name in heavy if name in sys.modules)))
"""


def loaded_at_import(
    function: str, script: str = CHILD, env: dict[str, str] | None = None
) -> set[str]:
    return set(json.loads(in_fresh_instance(function, script, json.dumps(HEAVY), env=env or {})))


def test_every_function_has_a_budget() -> None:
    assert sorted(BUDGET) == sorted(p.parent.name for p in FUNCTIONS.glob("*/index.py"))


@pytest.mark.parametrize("function", sorted(BUDGET))
def test_a_function_loads_only_its_budget(function: str) -> None:
    loaded = loaded_at_import(function)
    assert loaded == BUDGET[function], (
        f"{function} loads {sorted(loaded - BUDGET[function])} beyond its budget and "
        f"{sorted(BUDGET[function] - loaded)} less than pinned"
    )


def test_the_budget_catches_a_heavy_import() -> None:
    """The check itself can fail: the same child, given a function that imports SQLAlchemy,
    reports it."""
    assert "sqlalchemy" in loaded_at_import("users-me", "import sqlalchemy\n" + CHILD)


def test_an_envelope_in_the_settings_is_what_loads_the_crypto_library_and_kms() -> None:
    """A function without envelopes loads neither (above); the same function whose
    JWT_SECRET is an envelope loads `cryptography` to open it, and the KMS SDK only when
    KMS holds its data key."""
    master_key = base64.b64encode(secrets.token_bytes(32)).decode()
    local = {"LOCAL_MASTER_KEY": master_key}
    with FakeTencentCloud() as cloud:
        kms = FakeKms(cloud)
        remote = kms.env(kms.create_key())
        for env in (local, remote):
            keys = providers.from_settings(Settings.from_environ(env, resolve=False))
            env["JWT_SECRET"] = envelopes.seal(
                secrets.token_urlsafe(48).encode(), "JWT_SECRET", keys
            )
        assert loaded_at_import("users-me", env=local) == BASE | {"cryptography"}
        assert loaded_at_import("users-me", env=remote) >= BASE | {"cryptography", "tencentcloud"}
