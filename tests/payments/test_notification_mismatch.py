"""A genuine notification of a payment that is not its order's (another amount, no such
order) is refused and changes nothing, and its line is at ERROR: the provider took money that
no order shows until someone looks. The same mismatch in a report of no payment is a
warning."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.fakes.alipay import FakeAlipay
from tests.fakes.wechatpay import FakeWechatPay
from tests.payments.test_notifications import alipay_order, state, wechat_order
from tests.support.function_url import Reply
from tests.support.logs import capture_logs
from tests.support.payments import Buyer, alipay_notify, new_plan, wechat_notify

Deliver = Callable[[FakeWechatPay, FakeAlipay, Buyer], tuple[str, Reply]]


def wechat_paid_another_amount(wechatpay: Any, _alipay: Any, buyer: Buyer) -> tuple[str, Reply]:
    order_id = wechat_order(buyer, new_plan(price_fen=1990))
    sent = wechatpay.other_amount(order_id, 1)
    return order_id, wechat_notify(sent.lower_headers, sent.body)


def wechat_paid_no_such_order(wechatpay: Any, _alipay: Any, buyer: Buyer) -> tuple[str, Reply]:
    order_id = wechat_order(buyer, new_plan())
    sent = wechatpay.unknown_order(f"NO-SUCH-{order_id[:16]}")
    return order_id, wechat_notify(sent.lower_headers, sent.body)


def alipay_paid_another_amount(_wechatpay: Any, alipay: Any, buyer: Buyer) -> tuple[str, Reply]:
    order_id = alipay_order(buyer, new_plan(price_fen=1990))
    alipay.sim.scan(order_id)
    alipay.sim.pay(order_id)
    return order_id, alipay_notify(alipay.wrong_amount(order_id).body)


PAID_BUT_NOT_THE_ORDERS: dict[str, Deliver] = {
    "wechat, another amount": wechat_paid_another_amount,
    "wechat, no such order": wechat_paid_no_such_order,
    "alipay, another amount": alipay_paid_another_amount,
}


@pytest.mark.parametrize("case", list(PAID_BUT_NOT_THE_ORDERS))
def test_a_genuine_payment_that_is_not_the_orders_is_refused_at_error(
    wechatpay: FakeWechatPay, alipay: FakeAlipay, case: str
) -> None:
    buyer = Buyer()
    with capture_logs() as logs:
        order_id, reply = PAID_BUT_NOT_THE_ORDERS[case](wechatpay, alipay, buyer)
    assert reply.body == "fail" or (reply.status, reply.json()["code"]) == (400, "FAIL")
    assert state(buyer, order_id)[0] == "pending"
    (line,) = logs.where(message="payment notification")
    assert line["outcome"] == "rejected" and line["level"] == "error", line


def test_a_report_of_no_payment_that_is_not_the_orders_is_a_warning(
    wechatpay: FakeWechatPay,
) -> None:
    buyer = Buyer()
    order_id = wechat_order(buyer, new_plan(price_fen=1990))
    sent = wechatpay.sim.notification(
        order_id, event_type="TRANSACTION.CLOSED", trade_state="CLOSED", amount_fen=1
    )
    with capture_logs() as logs:
        reply = wechat_notify(sent.lower_headers, sent.body)
    assert reply.status == 400
    (line,) = logs.where(message="payment notification")
    assert line["outcome"] == "rejected" and line["level"] == "warning", line
