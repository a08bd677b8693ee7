"""The issue's acceptance, end to end: `make -s encrypt` seals JWT_SECRET, WECHAT_SECRET,
DATABASE_URL and WECHATPAY_APIV3_KEY under the fake KMS (real TC3 signing), `make -s
secret-put` stores METRICS_TOKEN and the payment providers' PEM keys for `secret:`
references, and the local cloud started on those settings (its own process: one instance)
serves registration, password and WeChat sign-in, the token-guarded metrics, and a payment
through each provider's fake, while KMS sees exactly one Decrypt per sealed value, however
many requests."""

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
from tests.fakes.alipay import FakeAlipay
from tests.fakes.kms import FakeKms
from tests.fakes.tencentcloud import FakeTencentCloud, sms_handler
from tests.fakes.wechat import FakeWechat
from tests.fakes.wechatpay import FakeWechatPay
from tests.support import log_guard
from tests.support.local_cloud import local_cloud_process

pytestmark = pytest.mark.slow

PASSWORD = "correct horse 9"
log_guard.remember(PASSWORD)
# The PEM keys go by reference (SCF's 4 KB of variables); the APIv3 key as an envelope.
REFERENCED = (
    "WECHATPAY_PRIVATE_KEY",
    "WECHATPAY_PUBLIC_KEY",
    "ALIPAY_PRIVATE_KEY",
    "ALIPAY_PUBLIC_KEY",
)


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


@pytest.fixture
def wechatpay() -> Any:
    with FakeWechatPay() as fake:
        yield fake


@pytest.fixture
def alipay() -> Any:
    with FakeAlipay() as fake:
        yield fake


def test_sign_in_and_pay_on_kms_envelopes_and_references_with_one_decrypt_each(
    cloud: FakeTencentCloud,
    kms: FakeKms,
    kms_key: str,
    wechat_api: FakeWechat,
    wechatpay: FakeWechatPay,
    alipay: FakeAlipay,
) -> None:
    cloud.on("SendSms", sms_handler())
    crypto = kms.env(kms_key)
    database_url = os.environ["DATABASE_URL"]
    jwt_secret, metrics_token = secrets.token_urlsafe(64), secrets.token_hex(32)
    payments = {**wechatpay.settings(), **alipay.settings()}
    for name, value in [("METRICS_TOKEN", metrics_token)] + [(n, payments[n]) for n in REFERENCED]:
        stored = make("secret-put", name, value.encode(), {**crypto, "DATABASE_URL": database_url})
        assert stored.returncode == 0, stored.stderr.decode()
        payments[name] = f"secret:{name}"
    phone = "+86139" + f"{secrets.randbelow(10**8):08d}"
    env = {
        **crypto,
        **wechat_api.env(),
        **payments,
        "WECHATPAY_APIV3_KEY": encrypted("WECHATPAY_APIV3_KEY", wechatpay.sim.apiv3_key, crypto),
        "ADMIN_PHONES": phone,
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
            admin = {"Authorization": f"Bearer {login.json()['access_token']}"}
            plan = {"name": "month", "price_fen": 990, "duration_days": 30, "quota": 10}
            put = http.put(
                f"{local.url}/admin/plans/kms-month", json=plan, headers=admin, timeout=30
            )
            assert put.status_code == 200, put.text
            for channel in ("wechat", "alipay"):
                body = {"plan_id": "kms-month", "channel": channel}
                ordered = http.post(f"{local.url}/orders", json=body, headers=admin, timeout=30)
                assert ordered.status_code == 201, ordered.text
                order_id = ordered.json()["id"]
                if channel == "wechat":
                    notified = wechatpay.sim.deliver(
                        wechatpay.pay(order_id), f"{local.url}/payments/wechat/notify"
                    )
                    assert notified == 200
                else:
                    alipay.sim.scan(order_id)
                    answer = alipay.sim.deliver(
                        alipay.sim.pay(order_id), f"{local.url}/payments/alipay/notify"
                    )
                    assert answer == "success"
                paid = http.get(f"{local.url}/orders/{order_id}", headers=admin, timeout=30)
                assert paid.json()["status"] == "paid"
            me = http.get(f"{local.url}/users/me", headers=admin, timeout=30).json()
            assert me["quota"]["balance"] == 20 and me["membership"]["plan_id"] == "kms-month"
            # JWT, WeChat and APIv3 secrets, the database URL, and five references.
            assert kms.count("Decrypt") - decrypts == 9
        output = "".join(local.output)
        for value in (jwt_secret, metrics_token, wechat_api.secret, wechatpay.sim.apiv3_key):
            assert value not in output
    finally:
        with get_engine().begin() as conn:
            conn.execute(
                delete(secrets_table).where(
                    secrets_table.c.name.in_(["METRICS_TOKEN", *REFERENCED])
                )
            )
