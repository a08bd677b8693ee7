"""ALIPAY_SELLER_ID: set, a genuine notification of another seller (or of none) is refused as
one of another app is and changes nothing, and a query's answer naming another seller is
not taken as paid; unset, the seller is not checked. The fake names its seller in every
notification, as Alipay does, and ALIPAY_SELLER_ID in its settings."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from app.config import get_settings
from app.payments.alipay import from_settings
from app.payments.gateway import ProviderError
from infra.local.sandbox.alipay import alipay_time
from tests.fakes.alipay import FakeAlipay
from tests.payments.test_notifications import alipay_order, member_for_30_days, state
from tests.payments.test_reconcile import run_job
from tests.support.logs import capture_logs
from tests.support.payments import Buyer, age_order, alipay_notify, new_plan, order_row
from tests.support.quota import counters
from tests.support.settings import settings_env

QUERY = "alipay.trade.query"
ANOTHER_SELLER = "2088999999999999"

OTHER_SELLERS: dict[str, Callable[[FakeAlipay, str], Any]] = {
    "another seller": lambda f, o: f.wrong_seller_id(o),
    "no seller": lambda f, o: f.sim.notification(o, seller_id=None),
}


def paid_order(alipay: FakeAlipay, buyer: Buyer, quota: int = 30) -> str:
    """An Alipay order whose trade the buyer has paid; its notification not yet delivered."""
    order_id = alipay_order(buyer, new_plan(price_fen=1990, duration_days=30, quota=quota))
    alipay.sim.scan(order_id)
    alipay.sim.pay(order_id)
    return order_id


def query_answer(alipay: FakeAlipay, order_id: str, **changes: str | None) -> bytes:
    """alipay.trade.query's signed answer for the paid trade, with `changes` (None drops)."""
    trade = alipay.sim.trade(order_id)
    assert trade.gmt_payment is not None
    answer = {
        "code": "10000",
        "msg": "Success",
        "out_trade_no": order_id,
        "trade_no": trade.trade_no,
        "trade_status": "TRADE_SUCCESS",
        "total_amount": trade.total_amount,
        "send_pay_date": alipay_time(trade.gmt_payment),
        **changes,
    }
    return alipay.sim.signed_answer(QUERY, {k: v for k, v in answer.items() if v is not None})


def test_the_fake_names_its_seller_as_alipay_does(alipay: FakeAlipay) -> None:
    assert alipay.settings()["ALIPAY_SELLER_ID"] == alipay.sim.seller_id
    order_id = paid_order(alipay, Buyer())
    assert alipay.sim.notification(order_id).fields["seller_id"] == alipay.sim.seller_id
    other = FakeAlipay(seller_id=ANOTHER_SELLER).sim
    assert other.app_settings()["ALIPAY_SELLER_ID"] == ANOTHER_SELLER


@pytest.mark.parametrize("case", list(OTHER_SELLERS))
def test_a_genuine_notification_of_another_seller_pays_nothing_and_ours_pays(
    alipay: FakeAlipay, case: str
) -> None:
    buyer = Buyer()
    order_id = paid_order(alipay, buyer)
    before = state(buyer, order_id)
    with capture_logs() as logs:
        reply = alipay_notify(OTHER_SELLERS[case](alipay, order_id).body)
    assert (reply.status, reply.body) == (200, "fail")
    assert state(buyer, order_id) == before and before[0] == "pending"
    assert counters(buyer.user_id) == (0, 0) and buyer.membership()[1] is None
    # Refused as a notification of another app_id is: at WARNING, no order named.
    (line,) = logs.where(message="payment notification")
    assert (line["outcome"], line["level"]) == ("rejected", "warning"), line
    assert line["reason"] == "the notification's seller_id is not ALIPAY_SELLER_ID"

    reply = alipay_notify(alipay.sim.notification(order_id).body)
    assert (reply.status, reply.body) == (200, "success")
    assert order_row(order_id)["status"] == "paid"
    assert counters(buyer.user_id) == (30, 0) and member_for_30_days(buyer)


def test_without_alipay_seller_id_the_seller_is_not_checked(alipay: FakeAlipay) -> None:
    buyer = Buyer()
    order_id = paid_order(alipay, buyer)
    with settings_env(ALIPAY_SELLER_ID=None):
        assert get_settings().alipay_seller_id == ""
        reply = alipay_notify(alipay.wrong_seller_id(order_id).body)
    assert (reply.status, reply.body) == (200, "success")
    assert order_row(order_id)["status"] == "paid" and counters(buyer.user_id) == (30, 0)


@pytest.mark.parametrize(
    ("seller", "expected"), [(ANOTHER_SELLER, None), ("ours", "paid"), (None, "paid")]
)
def test_the_adapter_takes_a_query_answer_of_our_seller_or_of_none(
    alipay: FakeAlipay, seller: str | None, expected: str | None
) -> None:
    order_id = paid_order(alipay, Buyer())
    gateway = from_settings(get_settings())
    seller_id = alipay.sim.seller_id if seller == "ours" else seller
    alipay.answer_next(200, query_answer(alipay, order_id, seller_id=seller_id))
    if expected is None:
        with pytest.raises(ProviderError, match="a seller_id that is not ALIPAY_SELLER_ID"):
            gateway.query(order_id)
    else:
        assert gateway.query(order_id).state == expected


@pytest.mark.parametrize("path", ["job", "read"])
def test_a_query_answer_naming_another_seller_is_not_taken_as_paid(
    alipay: FakeAlipay, own_database: None, path: str
) -> None:
    buyer = Buyer()
    order_id = paid_order(alipay, buyer)  # paid; the notification never arrives
    alipay.answer_next(200, query_answer(alipay, order_id, seller_id=ANOTHER_SELLER))
    age_order(order_id, 61)
    with capture_logs() as logs:
        if path == "job":
            assert run_job()["paid"] == 0
        else:
            reply = buyer.get(order_id)
            assert (reply.status, reply.json()["status"]) == (200, "pending")
    assert order_row(order_id)["status"] == "pending" and counters(buyer.user_id) == (0, 0)
    (line,) = logs.where(message="payment provider query failed", order_id=order_id)
    assert line["level"] == "warning" and "seller_id" in line["error"], line
    # Alipay's own answer names no seller: it is taken, and pays the order.
    age_order(order_id, 61)
    if path == "job":
        run_job()
    else:
        buyer.get(order_id)
    assert order_row(order_id)["status"] == "paid" and counters(buyer.user_id) == (30, 0)
