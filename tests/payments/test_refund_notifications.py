"""Refunds are made at the providers' consoles, never here, and take nothing back: a genuine
notification of one is acknowledged (so the provider stops sending it), changes nothing, and
its one line is a WARNING naming the order, so that someone hears the money went back."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.fakes.alipay import FakeAlipay
from tests.fakes.wechatpay import FakeWechatPay
from tests.payments.test_notifications import OK, alipay_order, state, wechat_order
from tests.support.function_url import Reply
from tests.support.logs import capture_logs
from tests.support.payments import Buyer, alipay_notify, new_plan, wechat_notify


def logged(deliver: Callable[[], Reply]) -> tuple[Reply, dict[str, Any], str]:
    """The answer to a delivery, the notification's one line, and all the log's text."""
    with capture_logs() as logs:
        reply = deliver()
    lines = logs.where(message="payment notification")
    assert len(lines) == 1, lines
    return reply, lines[0], logs.text


def paid_wechat_order(wechatpay: FakeWechatPay) -> tuple[Buyer, str]:
    """A buyer and their WeChat Pay order of 19.90, paid."""
    buyer = Buyer()
    order_id = wechat_order(buyer, new_plan(price_fen=1990, quota=30))
    paid = wechatpay.pay(order_id)
    assert wechat_notify(paid.lower_headers, paid.body).status == 200
    return buyer, order_id


@pytest.mark.parametrize("refund_status", ["SUCCESS", "ABNORMAL", "CLOSED"])
def test_a_wechat_refund_notification_is_acknowledged_and_said_at_warning(
    wechatpay: FakeWechatPay, refund_status: str
) -> None:
    buyer, order_id = paid_wechat_order(wechatpay)
    before = state(buyer, order_id)
    refund = wechatpay.sim.refund_notification(order_id, refund_status=refund_status)
    reply, line, text = logged(lambda: wechat_notify(refund.lower_headers, refund.body))
    assert (reply.status, reply.json()) == (200, OK)
    assert state(buyer, order_id) == before
    assert line["level"] == "warning" and line["order_id"] == order_id
    assert line["outcome"] == "ignored" and line["refund_status"] == refund_status
    if refund_status == "SUCCESS":
        assert line["refund_fen"] == 1990 and "went back to the payer" in line["reason"]
    assert "appid" not in line["reason"]
    for secret in (refund.headers["Wechatpay-Signature"], wechatpay.sim.apiv3_key):
        assert secret not in text


def test_a_partial_wechat_refund_names_its_amount(wechatpay: FakeWechatPay) -> None:
    _, order_id = paid_wechat_order(wechatpay)
    refund = wechatpay.sim.refund_notification(order_id, refund_fen=500)
    reply, line, _ = logged(lambda: wechat_notify(refund.lower_headers, refund.body))
    assert (reply.status, line["refund_fen"]) == (200, 500)


def test_a_wechat_refund_of_another_merchant_or_forged_is_rejected(
    wechatpay: FakeWechatPay,
) -> None:
    buyer, order_id = paid_wechat_order(wechatpay)
    before = state(buyer, order_id)
    other = wechatpay.sim.refund_notification(order_id, fields={"mchid": "1900009999"})
    reply = wechat_notify(other.lower_headers, other.body)
    assert reply.status == 400 and reply.json()["code"] == "FAIL"
    refund = wechatpay.sim.refund_notification(order_id)
    tampered = refund.body.replace(b'"REFUND.SUCCESS"', b'"REFUND.CLOSED"')
    assert tampered != refund.body
    assert wechat_notify(refund.lower_headers, tampered).status == 401
    assert state(buyer, order_id) == before


# A status WeChat Pay does not send, and values of no status's shape (JSON's list and
# object, which cannot even be looked up): each refused as unusable, never a 500.
@pytest.mark.parametrize("refund_status", ["MAYBE", ["SUCCESS"], {"status": "SUCCESS"}])
def test_a_wechat_refund_carrying_no_refund_status_is_refused(
    wechatpay: FakeWechatPay, refund_status: object
) -> None:
    _, order_id = paid_wechat_order(wechatpay)
    odd = wechatpay.sim.refund_notification(order_id, fields={"refund_status": refund_status})
    reply, line, _ = logged(lambda: wechat_notify(odd.lower_headers, odd.body))
    assert (reply.status, line["level"]) == (400, "error")


def paid_alipay_order(alipay: FakeAlipay) -> tuple[Buyer, str]:
    """A buyer and their Alipay order of 19.90, paid."""
    buyer = Buyer()
    order_id = alipay_order(buyer, new_plan(price_fen=1990, quota=30))
    alipay.sim.scan(order_id)
    assert alipay_notify(alipay.sim.pay(order_id).body).body == "success"
    return buyer, order_id


REFUNDS = {
    # In full: the trade is closed, with the refund's fields and gmt_close.
    "in full": (
        "TRADE_CLOSED",
        "19.90",
        {"gmt_close": "2026-12-07 12:00:00", "gmt_refund": "2026-12-07 12:00:00.123"},
        "ignored",
    ),
    # In part: the trade stays TRADE_SUCCESS, with the refund's fields.
    "in part": ("TRADE_SUCCESS", "5.00", {"gmt_refund": "2026-12-07 12:00:00.123"}, "repeat"),
}


@pytest.mark.parametrize("refund", list(REFUNDS), ids=list(REFUNDS))
def test_an_alipay_refund_notification_is_acknowledged_and_said_at_warning(
    alipay: FakeAlipay, refund: str
) -> None:
    trade_status, refund_fee, fields, outcome = REFUNDS[refund]
    buyer, order_id = paid_alipay_order(alipay)
    before = state(buyer, order_id)
    n = alipay.sim.notification(
        order_id,
        trade_status=trade_status,
        refund_fee=refund_fee,
        out_biz_no="RF0001",
        **fields,
    )
    reply, line, text = logged(lambda: alipay_notify(n.body))
    assert reply.body == "success" and state(buyer, order_id) == before
    assert line["level"] == "warning" and line["order_id"] == order_id
    assert line["outcome"] == outcome and line["refund_status"] == "SUCCESS"
    assert line["refund_fen"] == int(refund_fee.replace(".", ""))
    assert "went back to the payer" in line["reason"]
    assert n.fields["sign"] not in text


def test_an_alipay_trade_closed_unpaid_is_no_refund(alipay: FakeAlipay) -> None:
    buyer = Buyer()
    order_id = alipay_order(buyer, new_plan())
    alipay.sim.scan(order_id)
    n = alipay.sim.notification(order_id, trade_status="TRADE_CLOSED")
    reply, line, _ = logged(lambda: alipay_notify(n.body))
    assert reply.body == "success"
    assert line["level"] == "info" and "refund_status" not in line


def test_an_alipay_payment_whose_refund_fee_is_zero_is_no_refund(alipay: FakeAlipay) -> None:
    """A refund_fee of 0.00 on a payment says nothing went back: the payment is taken, its
    line at INFO."""
    buyer = Buyer()
    order_id = alipay_order(buyer, new_plan())
    alipay.sim.scan(order_id)
    n = alipay.sim.notification(order_id, trade_status="TRADE_SUCCESS", refund_fee="0.00")
    reply, line, _ = logged(lambda: alipay_notify(n.body))
    assert reply.body == "success" and line["outcome"] == "accepted"
    assert line["level"] == "info" and "refund_status" not in line
