"""Payments test support: plans, buyers and their orders, through the functions."""

from __future__ import annotations

import secrets
from datetime import timedelta
from typing import Any

from sqlalchemy import select, update

from app.db.tables import orders, users
from app.db.transaction import transaction
from tests.support.function_url import Reply, call
from tests.support.functions import handler
from tests.support.pipelines import token_for
from tests.support.quota import new_user

# Both payment channels on, as an operator sets them for production. The PEM keys are short
# stand-ins (parsed at first use, not at load); deployed, they are secret: references.
PRODUCTION_PAYMENT_ENV = {
    "WECHATPAY_API_BASE": "https://api.mch.weixin.qq.com",
    "WECHATPAY_MCHID": "1900000109",
    "WECHATPAY_APPID": "wx0000000000000000",
    "WECHATPAY_PRIVATE_KEY": "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----",
    "WECHATPAY_CERT_SERIAL": "444F4864EA9B34415E1DA6D6E1B7B1F9E7F3A0E2",
    "WECHATPAY_APIV3_KEY": secrets.token_hex(16),
    "WECHATPAY_PUBLIC_KEY": "-----BEGIN PUBLIC KEY-----\nMIIB\n-----END PUBLIC KEY-----",
    "WECHATPAY_PUBLIC_KEY_ID": "PUB_KEY_ID_0119000001092025010100000000000000",
    "WECHATPAY_NOTIFY_URL": "https://api.example.com/payments/wechat/notify",
    "ALIPAY_GATEWAY": "https://openapi.alipay.com/gateway.do",
    "ALIPAY_APPID": "2021000000000000",
    "ALIPAY_PRIVATE_KEY": "-----BEGIN RSA PRIVATE KEY-----\nMIIE\n-----END RSA PRIVATE KEY-----",
    "ALIPAY_PUBLIC_KEY": "-----BEGIN PUBLIC KEY-----\nMIIB\n-----END PUBLIC KEY-----",
    "ALIPAY_NOTIFY_URL": "https://api.example.com/payments/alipay/notify",
    "ALIPAY_SELLER_ID": "2088000000000000",
}


def admin_token() -> str:
    return token_for(new_user(role="admin"))


def new_plan_id() -> str:
    return f"plan-{secrets.token_hex(6)}"


def put_plan(plan_id: str, token: str | None = None, **fields: Any) -> Reply:
    body = {
        "name": f"plan {plan_id}",
        "price_fen": 1990,
        "duration_days": 30,
        "quota": 100,
        "enabled": True,
        **fields,
    }
    return call(
        handler("admin-plans-put"),
        "PUT",
        f"/admin/plans/{plan_id}",
        body=body,
        token=token or admin_token(),
    )


def new_plan(**fields: Any) -> str:
    plan_id = new_plan_id()
    reply = put_plan(plan_id, **fields)
    assert reply.status == 200, reply.body
    return plan_id


class Buyer:
    """A user buying plans through `POST /orders` and reading them with `GET /orders/{id}`."""

    def __init__(self) -> None:
        self.user_id = new_user()
        self.token = token_for(self.user_id)

    def order(self, plan_id: str, channel: str, key: str | None = None) -> Reply:
        headers = {"Idempotency-Key": key} if key is not None else {}
        return call(
            handler("orders"),
            "POST",
            "/orders",
            body={"plan_id": plan_id, "channel": channel},
            token=self.token,
            headers=headers,
        )

    def get(self, order_id: str) -> Reply:
        return call(handler("orders-id"), "GET", f"/orders/{order_id}", token=self.token)

    def membership(self) -> tuple[Any, str | None]:
        with transaction() as tx:
            row = tx.execute(
                select(users.c.membership_expires_at, users.c.membership_plan_id).where(
                    users.c.id == self.user_id
                )
            ).one()
        return row.membership_expires_at, row.membership_plan_id

    def me(self) -> dict[str, Any]:
        reply = call(handler("users-me"), "GET", "/users/me", token=self.token)
        assert reply.status == 200, reply.body
        return dict(reply.json())


def order_row(order_id: str) -> dict[str, Any]:
    with transaction() as tx:
        row = tx.execute(select(orders).where(orders.c.id == order_id)).mappings().one()
    return dict(row)


def wechat_notify(headers: dict[str, str], body: bytes) -> Reply:
    """Deliver a WeChat Pay notification to its function, as the custom domain would."""
    return call(
        handler("payments-wechat-notify"),
        "POST",
        "/payments/wechat/notify",
        raw_body=body,
        headers=headers,
    )


def alipay_notify(body: bytes) -> Reply:
    """Deliver an Alipay notification (a form) to its function."""
    return call(
        handler("payments-alipay-notify"),
        "POST",
        "/payments/alipay/notify",
        raw_body=body,
        headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"},
    )


def age_order(order_id: str, seconds: float) -> None:
    """Make an order (and its last check) `seconds` older, as if time had passed."""
    with transaction() as tx:
        row = tx.execute(select(orders).where(orders.c.id == order_id)).mappings().one()
        back = timedelta(seconds=seconds)
        tx.execute(
            update(orders)
            .where(orders.c.id == order_id)
            .values(
                created_at=row["created_at"] - back,
                expires_at=row["expires_at"] - back,
                checked_at=None if row["checked_at"] is None else row["checked_at"] - back,
            )
        )
