"""The issue's acceptance, end to end: `make -s encrypt` seals JWT_SECRET, WECHAT_SECRET and
DATABASE_URL under the fake KMS (real TC3 signing), `make -s secret-put` stores METRICS_TOKEN
for a `secret:` reference, and the local cloud started on those settings (its own process:
one instance) serves registration, password and WeChat sign-in and the token-guarded
metrics, while KMS sees exactly one Decrypt per sealed value, however many requests."""

from __future__ import annotations

import os
import secrets
from typing import Any

import jwt
import pytest
import requests
from sqlalchemy import delete

from app.db.engine import get_engine
from app.db.tables import secrets as secrets_table
from tests.crypto.conftest import make
from tests.fakes.kms import FakeKms
from tests.fakes.tencentcloud import FakeTencentCloud, sms_handler
from tests.fakes.wechat import FakeWechat
from tests.support.local_cloud import local_cloud_process

pytestmark = pytest.mark.slow

PASSWORD = "correct horse 9"


def encrypted(name: str, value: str, env: dict[str, str]) -> str:
    done = make("encrypt", name, value.encode() + b"\n", env)
    assert done.returncode == 0, done.stderr.decode()
    lines = done.stdout.decode().splitlines()
    assert len(lines) == 1 and lines[0].startswith("enc:v1:"), done.stdout
    return lines[0]


@pytest.fixture
def wechat_api() -> Any:
    with FakeWechat(secret=secrets.token_hex(16)) as fake:
        yield fake


def test_sign_in_on_kms_envelopes_and_a_reference_with_one_decrypt_each(
    cloud: FakeTencentCloud, kms: FakeKms, kms_key: str, wechat_api: FakeWechat
) -> None:
    cloud.on("SendSms", sms_handler())
    crypto = kms.env(kms_key)
    database_url = os.environ["DATABASE_URL"]
    jwt_secret, metrics_token = secrets.token_urlsafe(64), secrets.token_hex(32)
    stored = make(
        "secret-put",
        "METRICS_TOKEN",
        metrics_token.encode(),
        {**crypto, "DATABASE_URL": database_url},
    )
    assert stored.returncode == 0, stored.stderr.decode()
    env = {
        **crypto,
        **wechat_api.env(),
        "PATH": os.environ.get("PATH", ""),
        "PORT": "0",
        "APP_ENV": "test",
        "LOG_LEVEL": "WARNING",
        "REDIS_URL": os.environ["REDIS_URL"],
        "BCRYPT_COST": "10",
        "SMS_PROVIDER": "tencent",
        "SMS_SDK_APP_ID": "1400000001",
        "SMS_SIGN_NAME": "TestSign",
        "SMS_TEMPLATE_ID": "100001",
        "JWT_SECRET": encrypted("JWT_SECRET", jwt_secret, crypto),
        "WECHAT_SECRET": encrypted("WECHAT_SECRET", wechat_api.secret, crypto),
        "DATABASE_URL": encrypted("DATABASE_URL", database_url, crypto),
        "METRICS_TOKEN": "secret:METRICS_TOKEN",
    }
    decrypts = kms.count("Decrypt")
    try:
        with local_cloud_process(env) as local:
            http = requests.Session()

            def post(path: str, body: dict[str, Any]) -> requests.Response:
                return http.post(local.url + path, json=body, timeout=30)

            phone = "+86139" + f"{secrets.randbelow(10**8):08d}"
            assert post("/auth/sms-code", {"phone": phone, "purpose": "register"}).ok
            code = cloud.calls_of("SendSms")[-1].params["TemplateParamSet"][0]
            registered = post(
                "/auth/register", {"phone": phone, "password": PASSWORD, "code": code}
            )
            assert registered.status_code == 201, registered.text
            for _ in range(3):
                login = post("/auth/login", {"phone": phone, "password": PASSWORD})
                assert login.status_code == 200, login.text
                claims = jwt.decode(
                    login.json()["access_token"],
                    jwt_secret,
                    algorithms=["HS256"],
                    audience="ai-platform-app",
                    issuer="ai-platform",
                )
                assert claims["sub"] == registered.json()["user"]["id"]
            wechat_api.code("wx-code-1", openid="o" + secrets.token_hex(10))
            signed_in = post("/auth/wechat-login", {"code": "wx-code-1"})
            assert signed_in.status_code == 200, signed_in.text
            assert wechat_api.requests[-1]["secret"] == wechat_api.secret
            bearer = {"Authorization": f"Bearer {metrics_token}"}
            assert http.get(local.url + "/metrics", headers=bearer, timeout=30).status_code == 200
            assert http.get(local.url + "/metrics", timeout=30).status_code == 401
            for _ in range(5):
                assert (
                    http.get(
                        local.url + "/users/me",
                        headers={"Authorization": f"Bearer {login.json()['access_token']}"},
                        timeout=30,
                    ).status_code
                    == 200
                )
            assert kms.count("Decrypt") - decrypts == 4
        output = "".join(local.output)
        for value in (jwt_secret, metrics_token, wechat_api.secret):
            assert value not in output
    finally:
        with get_engine().begin() as conn:
            conn.execute(delete(secrets_table).where(secrets_table.c.name == "METRICS_TOKEN"))
