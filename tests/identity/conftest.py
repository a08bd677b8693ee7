"""Identity tests: a fake Tencent Cloud API (SMS) and a fake WeChat API for the whole run,
settings pointing at them, a clean Redis per test, and `flows` to drive the routes through
the functions' own handlers."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

import pytest

from tests.fakes.tencentcloud import FakeTencentCloud, sms_handler
from tests.fakes.wechat import FakeWechat
from tests.support import log_guard
from tests.support.function_url import Reply, call
from tests.support.functions import handler
from tests.support.settings import settings_env

PASSWORD = "correct horse 9"
log_guard.remember(PASSWORD)


@pytest.fixture(scope="session")
def tencent() -> Iterator[FakeTencentCloud]:
    with FakeTencentCloud() as fake:
        # The provider's frequency policy, which counts per number, names no number.
        frequency = {"+8613000000001": "LimitExceeded.DeliveryFrequencyLimit"}
        fake.on("SendSms", sms_handler(failing={"+8613000000000"}, refusing=frequency))
        yield fake


@pytest.fixture(scope="session")
def wechat_api() -> Iterator[FakeWechat]:
    with FakeWechat() as fake:
        yield fake


def identity_env(tencent: FakeTencentCloud, wechat_api: FakeWechat) -> dict[str, str | None]:
    return {
        "SMS_PROVIDER": "tencent",
        "SMS_SDK_APP_ID": "1400000001",
        "SMS_SIGN_NAME": "TestSign",
        "SMS_TEMPLATE_ID": "100001",
        "TENCENTCLOUD_REGION": "ap-guangzhou",
        "BCRYPT_COST": "10",
        "ADMIN_PHONES": "+8613700000001, 13700000002",
        **tencent.env(),
        **wechat_api.env(),
    }


@pytest.fixture(autouse=True)
def _identity_settings(
    tencent: FakeTencentCloud, wechat_api: FakeWechat, clean_redis: Any
) -> Iterator[None]:
    with settings_env(**identity_env(tencent, wechat_api)):
        yield


def new_phone() -> str:
    return "+86139" + f"{secrets.randbelow(10**8):08d}"


def new_ip() -> str:
    return f"198.51.{secrets.randbelow(256)}.{secrets.randbelow(256)}"


class Flows:
    """Each route called through its SCF function, as API Gateway would."""

    def __init__(self, tencent: FakeTencentCloud, wechat_api: FakeWechat) -> None:
        self.tencent = tencent
        self.wechat = wechat_api

    def call(self, function: str, method: str, path: str, **kwargs: Any) -> Reply:
        return call(handler(function), method, path, **kwargs)

    def sms(self, phone: str, purpose: str = "login", ip: str | None = None) -> Reply:
        body = {"phone": phone, "purpose": purpose}
        return self.call(
            "auth-sms-code", "POST", "/auth/sms-code", body=body, source_ip=ip or new_ip()
        )

    def last_code(self, phone: str) -> str:
        """The code the fake SMS provider was last asked to send to `phone`."""
        normalized = phone if phone.startswith("+86") else "+86" + phone
        for sent in reversed(self.tencent.calls_of("SendSms")):
            if normalized in sent.params["PhoneNumberSet"]:
                return str(sent.params["TemplateParamSet"][0])
        raise AssertionError(f"no SMS sent to {phone}")

    def code_for(self, phone: str, purpose: str = "login") -> str:
        """A fresh code, as if the cooldown had passed (its own tests are in test_sms)."""
        from app.identity import sms
        from app.identity.phones import normalize
        from app.redis_client import get_redis

        get_redis().delete(sms.cooldown_key(normalize(phone)))
        reply = self.sms(phone, purpose)
        assert reply.status == 200, reply.body
        return self.last_code(phone)

    def register(
        self,
        phone: str | None = None,
        password: str = PASSWORD,
        ip: str = "203.0.113.9",
        **extra: Any,
    ) -> Reply:
        phone = phone or new_phone()
        code = extra.pop("code", None) or self.code_for(phone, "register")
        body = {"phone": phone, "password": password, "code": code, **extra}
        return self.call("auth-register", "POST", "/auth/register", body=body, source_ip=ip)

    def registered(self, phone: str | None = None, **extra: Any) -> dict[str, Any]:
        reply = self.register(phone, **extra)
        assert reply.status == 201, reply.body
        data: dict[str, Any] = reply.json()
        return data

    def login(self, phone: str, password: str = PASSWORD, ip: str = "203.0.113.9") -> Reply:
        body = {"phone": phone, "password": password}
        return self.call("auth-login", "POST", "/auth/login", body=body, source_ip=ip)

    def code_login(self, phone: str, code: str | None = None, ip: str = "203.0.113.9") -> Reply:
        code = code or self.code_for(phone, "login")
        body = {"phone": phone, "code": code}
        return self.call("auth-login", "POST", "/auth/login", body=body, source_ip=ip)

    def wechat_login(self, code: str, **extra: Any) -> Reply:
        body = {"code": code, **extra}
        return self.call("auth-wechat-login", "POST", "/auth/wechat-login", body=body)

    def refresh(self, refresh_token: str) -> Reply:
        body = {"refresh_token": refresh_token}
        return self.call("auth-refresh", "POST", "/auth/refresh", body=body)

    def me(self, token: str) -> Reply:
        return self.call("users-me", "GET", "/users/me", token=token)

    def admin_token(self) -> str:
        """A signed-in admin (a fresh phone listed in ADMIN_PHONES for this call)."""
        phone = new_phone()
        with settings_env(ADMIN_PHONES=phone):
            pair = self.registered(phone)
        assert pair["user"]["role"] == "admin"
        return str(pair["access_token"])

    def disable(self, user_id: str) -> None:
        """A fresh admin disables the user through PATCH /admin/users/{id}."""
        reply = self.call(
            "admin-users-id",
            "PATCH",
            f"/admin/users/{user_id}",
            body={"disabled": True},
            token=self.admin_token(),
        )
        assert reply.status == 200, reply.body


@pytest.fixture
def flows(tencent: FakeTencentCloud, wechat_api: FakeWechat) -> Flows:
    return Flows(tencent, wechat_api)
