"""Notifications of shapes the providers never send, or send rarely, through the notify
functions: a body anyone can post that is no event (not UTF-8, not a JSON object), bodies
only the platform's key could have signed that still are no transaction, genuine
transactions carrying a value no order can take, a channel that is not configured, and the
fields Alipay may leave out (gmt_payment). Each is answered as its kind asks, changes what
it should and nothing else, and says why in one line without a key."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from infra.local.sandbox.wechatpay import Notification, encrypt_resource
from tests.fakes.alipay import FakeAlipay
from tests.fakes.wechatpay import FakeWechatPay
from tests.payments.test_notifications import alipay_order, state, wechat_order
from tests.support.function_url import call
from tests.support.functions import handler
from tests.support.logs import capture_logs
from tests.support.payments import Buyer, alipay_notify, new_plan, order_row, wechat_notify
from tests.support.quota import counters
from tests.support.settings import settings_env


def signed_event(fake: FakeWechatPay, resource: dict[str, Any]) -> Notification:
    """An event whose resource is `resource`, signed with the platform key."""
    event = {
        "id": "EV-shape",
        "create_time": "2026-01-01T00:00:00+08:00",
        "resource_type": "encrypt-resource",
        "event_type": "TRANSACTION.SUCCESS",
        "summary": "支付成功",
        "resource": resource,
    }
    return fake.signed_body(json.dumps(event).encode())


def sealed(fake: FakeWechatPay, plaintext: str) -> dict[str, Any]:
    return encrypt_resource(fake.sim.apiv3_key, plaintext, "transaction")


def the_line(logs: Any) -> dict[str, Any]:
    (line,) = logs.where(message="payment notification")
    return line


# ------------------------------------------------------------ bodies anyone can post


def genuine_headers_with(
    fake: FakeWechatPay, order_id: str, body: bytes
) -> tuple[dict[str, str], bytes]:
    """A genuine notification's headers over another body (what a client may post)."""
    return fake.sim.notification(order_id).lower_headers, body


NO_EVENT: dict[str, tuple[bytes, str]] = {
    "not UTF-8": (b'{"resource": "\xff\xfe"}', "not UTF-8"),
    "a JSON array": (b"[1, 2, 3]", "not an encrypted WeChat Pay event"),
    "a JSON string": (b'"paid"', "not an encrypted WeChat Pay event"),
}


@pytest.mark.parametrize("case", list(NO_EVENT))
def test_a_wechat_notify_body_that_is_no_event_is_a_400_and_changes_nothing(
    wechatpay: FakeWechatPay, case: str
) -> None:
    body, reason = NO_EVENT[case]
    buyer = Buyer()
    order_id = wechat_order(buyer, new_plan(quota=10))
    before = state(buyer, order_id)
    headers, body = genuine_headers_with(wechatpay, order_id, body)
    with capture_logs() as logs:
        # A body that is not UTF-8 reaches the function base64-encoded, as a Function URL
        # sends any binary body.
        reply = call(
            handler("payments-wechat-notify"),
            "POST",
            "/payments/wechat/notify",
            raw_body=body,
            headers=headers,
            base64_body=True,
        )
    assert reply.status == 400, reply.body
    assert reply.json()["code"] == "FAIL"
    assert state(buyer, order_id) == before
    line = the_line(logs)
    assert (line["outcome"], line["level"]) == ("rejected", "warning")
    assert reason in line["reason"]
    assert headers["wechatpay-signature"] not in logs.text


# ------------------------------------------------------------ signed, yet no transaction


SIGNED_NO_TRANSACTION: dict[str, Callable[[FakeWechatPay], dict[str, Any]]] = {
    # the SDK fails on these past the signature: base64 that is not, a plaintext not JSON
    "ciphertext not base64": lambda f: {**sealed(f, "{}"), "ciphertext": "!!not base64!!"},
    "plaintext not JSON": lambda f: sealed(f, "paid, honest"),
    # decrypts to JSON that is not an object
    "plaintext a JSON array": lambda f: sealed(f, "[1, 2]"),
    "plaintext a JSON string": lambda f: sealed(f, '"SUCCESS"'),
}


@pytest.mark.parametrize("case", list(SIGNED_NO_TRANSACTION))
def test_a_signed_wechat_event_that_holds_no_transaction_is_a_400_and_changes_nothing(
    wechatpay: FakeWechatPay, case: str
) -> None:
    buyer = Buyer()
    order_id = wechat_order(buyer, new_plan(quota=10))
    before = state(buyer, order_id)
    sent = signed_event(wechatpay, SIGNED_NO_TRANSACTION[case](wechatpay))
    with capture_logs() as logs:
        reply = wechat_notify(sent.lower_headers, sent.body)
    assert reply.status == 400, reply.body
    assert state(buyer, order_id) == before
    line = the_line(logs)
    assert line["outcome"] == "rejected" and line["reason"].startswith("notification")
    assert "Traceback" not in logs.text and wechatpay.sim.apiv3_key not in logs.text


# ------------------------------------------------------------ genuine, not usable


UNUSABLE: dict[str, tuple[dict[str, Any], str]] = {
    "no out_trade_no": ({"out_trade_no": None}, "no out_trade_no"),
    "amount not an object": ({"amount": 1990}, "an amount that is not an object"),
    "transaction_id a number": ({"transaction_id": 4200000001}, "transaction_id"),
}


@pytest.mark.parametrize("case", list(UNUSABLE))
def test_a_genuine_wechat_transaction_with_a_value_we_cannot_take_is_refused_at_error(
    wechatpay: FakeWechatPay, case: str
) -> None:
    fields, reason = UNUSABLE[case]
    buyer = Buyer()
    order_id = wechat_order(buyer, new_plan(price_fen=1990, quota=10))
    wechatpay.pay(order_id)
    sent = wechatpay.sim.notification(order_id, fields=fields)
    before = state(buyer, order_id)
    with capture_logs() as logs:
        reply = wechat_notify(sent.lower_headers, sent.body)
    assert reply.status == 400, reply.body
    assert state(buyer, order_id) == before
    line = the_line(logs)
    assert (line["outcome"], line["level"]) == ("rejected", "error")
    assert reason in line["reason"]


def test_a_genuine_wechat_payment_in_another_currency_is_not_the_orders(
    wechatpay: FakeWechatPay,
) -> None:
    buyer = Buyer()
    order_id = wechat_order(buyer, new_plan(price_fen=1990, quota=10))
    wechatpay.pay(order_id)
    amount = {"total": 1990, "payer_total": 1990, "currency": "USD", "payer_currency": "USD"}
    sent = wechatpay.sim.notification(order_id, fields={"amount": amount})
    with capture_logs() as logs:
        reply = wechat_notify(sent.lower_headers, sent.body)
    assert reply.status == 400, reply.body
    assert order_row(order_id)["status"] == "pending" and counters(buyer.user_id) == (0, 0)
    line = the_line(logs)
    assert (line["outcome"], line["level"]) == ("rejected", "error")
    assert line["reason"] == "currency USD is not CNY" and line["order_id"] == order_id


# ------------------------------------------------------------ a channel not configured


def ec_private_key() -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def test_a_notification_to_a_channel_not_configured_is_refused_and_names_what_is_missing(
    wechatpay: FakeWechatPay,
) -> None:
    buyer = Buyer()
    order_id = wechat_order(buyer, new_plan(quota=10))
    genuine = wechatpay.pay(order_id)
    before = state(buyer, order_id)
    with capture_logs() as logs, settings_env(WECHATPAY_APIV3_KEY=None):
        reply = wechat_notify(genuine.lower_headers, genuine.body)
    assert reply.status == 400 and state(buyer, order_id) == before
    line = the_line(logs)
    assert line["outcome"] == "rejected" and line["order_id"] is None
    assert line["reason"] == "WeChat Pay is not configured: WECHATPAY_APIV3_KEY unset"
    # configured again, the provider's retry of the same notification pays the order
    assert wechat_notify(genuine.lower_headers, genuine.body).status == 200
    assert order_row(order_id)["status"] == "paid" and counters(buyer.user_id) == (10, 0)


def test_a_merchant_key_that_is_not_rsa_is_refused_for_orders_and_notifications(
    wechatpay: FakeWechatPay,
) -> None:
    buyer = Buyer()
    plan = new_plan(quota=10)
    order_id = wechat_order(buyer, plan)
    genuine = wechatpay.pay(order_id)
    ec_key = ec_private_key()
    with capture_logs() as logs, settings_env(WECHATPAY_PRIVATE_KEY=ec_key):
        refused = buyer.order(plan, "wechat")
        reply = wechat_notify(genuine.lower_headers, genuine.body)
    assert refused.status == 502 and refused.json()["code"] == "PAYMENT_PROVIDER_ERROR"
    assert reply.status == 400 and order_row(order_id)["status"] == "pending"
    reason = "WeChat Pay is not configured: WECHATPAY_PRIVATE_KEY is not an RSA key"
    assert the_line(logs)["reason"] == reason
    (create,) = logs.where(message="payment provider refused an order")
    assert create["error"] == reason
    body_lines = [ln for ln in ec_key.splitlines() if "-" not in ln]
    assert not any(ln in logs.text for ln in body_lines)


# ------------------------------------------------------------ Alipay


ALIPAY_SDK_GATEWAY = "https://openapi.alipay.com/gateway.do"


def test_alipay_at_its_production_gateway_verifies_notifications(alipay: FakeAlipay) -> None:
    # The gateway the SDK has by default: nothing to set in its client. A notification is
    # verified with the keys alone: the real gateway is not reachable from the tests.
    buyer = Buyer()
    order_id = alipay_order(buyer, new_plan(quota=10))
    alipay.sim.scan(order_id)
    genuine = alipay.sim.pay(order_id)
    with settings_env(ALIPAY_GATEWAY=ALIPAY_SDK_GATEWAY):
        reply = alipay_notify(genuine.body)
    assert (reply.status, reply.body) == (200, "success")
    assert order_row(order_id)["status"] == "paid" and counters(buyer.user_id) == (10, 0)


@pytest.mark.parametrize("gmt_payment", [None, "yesterday", "2026-13-45 25:61:00"])
def test_an_alipay_payment_without_a_readable_gmt_payment_is_paid_as_of_now(
    alipay: FakeAlipay, gmt_payment: str | None
) -> None:
    # gmt_payment is optional in Alipay's notification; the signed rest proves the payment.
    buyer = Buyer()
    order_id = alipay_order(buyer, new_plan(quota=10))
    alipay.sim.scan(order_id)
    alipay.sim.pay(order_id)
    sent = alipay.sim.notification(order_id, gmt_payment=gmt_payment)
    reply = alipay_notify(sent.body)
    assert (reply.status, reply.body) == (200, "success")
    row = order_row(order_id)
    assert row["status"] == "paid" and counters(buyer.user_id) == (10, 0)
    paid_at = row["paid_at"].replace(tzinfo=row["paid_at"].tzinfo or timezone.utc)
    assert abs(paid_at - datetime.now(timezone.utc)) < timedelta(minutes=1)
