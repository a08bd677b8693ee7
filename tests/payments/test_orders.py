"""`POST /orders` and `GET /orders/{id}`: the provider is asked first and the order written
after, so a provider failure leaves nothing payable; Idempotency-Key as on `POST /tasks`;
another user's order is 404."""

from __future__ import annotations

import json
import threading
from datetime import datetime, timedelta

import pytest
from sqlalchemy import func, select

from app.db.tables import orders
from app.db.transaction import transaction
from tests.fakes.alipay import FakeAlipay
from tests.fakes.wechatpay import FakeWechatPay
from tests.support.function_url import call
from tests.support.functions import handler
from tests.support.logs import capture_logs
from tests.support.payments import Buyer, new_plan, order_row, put_plan
from tests.support.settings import settings_env


def parse(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def orders_of(user_id: str) -> int:
    with transaction() as tx:
        return int(
            tx.execute(select(func.count()).where(orders.c.user_id == user_id)).scalar() or 0
        )


def test_a_wechat_order_is_a_native_trade_for_the_plans_price(wechatpay: FakeWechatPay) -> None:
    plan = new_plan(price_fen=2990, duration_days=30, quota=300)
    buyer = Buyer()
    reply = buyer.order(plan, "wechat")
    assert reply.status == 201, reply.body
    order = reply.json()
    assert order["status"] == "pending" and order["channel"] == "wechat"
    assert order["amount_fen"] == 2990 and order["plan_id"] == plan
    assert order["code_url"].endswith(f"/sandbox/pay/{order['id']}")
    assert order["qr_code"] is None and order["paid_at"] is None
    created, expires = parse(order["created_at"]), parse(order["expires_at"])
    assert expires - created == timedelta(seconds=1800)
    trade = wechatpay.sim.trades[order["id"]]
    assert trade.amount_fen == 2990
    assert trade.notify_url == "https://api.example.com/payments/wechat/notify"
    assert trade.time_expire is not None and abs(trade.time_expire - expires).total_seconds() < 1
    assert all(r.authorized for r in wechatpay.requests)
    assert buyer.get(order["id"]).json() == order


def test_an_alipay_order_is_a_precreated_trade(alipay: FakeAlipay) -> None:
    plan = new_plan(price_fen=1990)
    reply = Buyer().order(plan, "alipay")
    assert reply.status == 201, reply.body
    order = reply.json()
    assert order["qr_code"].endswith(f"/sandbox/pay/{order['id']}") and order["code_url"] is None
    [precreate] = alipay.gateway_calls("alipay.trade.precreate")
    assert precreate.biz["out_trade_no"] == order["id"]
    assert precreate.biz["total_amount"] == "19.90"


def test_an_alipay_trade_is_titled_without_the_characters_alipay_refuses(
    alipay: FakeAlipay,
) -> None:
    # Alipay refuses a subject holding "/", "=" or "&"; a plan's name may hold them.
    plan = new_plan(name="Pro / month & more = best")
    reply = Buyer().order(plan, "alipay")
    assert reply.status == 201, reply.body
    [precreate] = alipay.gateway_calls("alipay.trade.precreate")
    assert precreate.biz["subject"] == "Pro month more best"


def test_the_order_keeps_the_price_it_was_sold_at(wechatpay: FakeWechatPay) -> None:
    plan = new_plan(price_fen=1000)
    buyer = Buyer()
    order = buyer.order(plan, "wechat").json()
    assert put_plan(plan, price_fen=5000).status == 200
    assert buyer.get(order["id"]).json()["amount_fen"] == 1000
    assert order_row(order["id"])["amount_fen"] == 1000


def test_unknown_and_disabled_plans_are_not_sold(wechatpay: FakeWechatPay) -> None:
    buyer = Buyer()
    reply = buyer.order("no-such-plan", "wechat")
    assert reply.status == 404 and reply.json()["code"] == "PLAN_NOT_FOUND"
    disabled = new_plan(enabled=False)
    reply = buyer.order(disabled, "wechat")
    assert reply.status == 404 and reply.json()["code"] == "PLAN_NOT_FOUND"
    assert wechatpay.requests == [] and orders_of(buyer.user_id) == 0


@pytest.mark.parametrize("how", ["503", "reset"])
def test_a_provider_that_fails_leaves_no_order(wechatpay: FakeWechatPay, how: str) -> None:
    plan = new_plan()
    buyer = Buyer()
    wechatpay.down(how)  # type: ignore[arg-type]
    reply = buyer.order(plan, "wechat")
    assert reply.status == 502 and reply.json()["code"] == "PAYMENT_PROVIDER_ERROR"
    assert orders_of(buyer.user_id) == 0
    wechatpay.up()
    assert buyer.order(plan, "wechat").status == 201


def test_a_provider_error_answer_leaves_no_order(alipay: FakeAlipay) -> None:
    plan = new_plan()
    buyer = Buyer()
    alipay.down()
    reply = buyer.order(plan, "alipay")
    assert reply.status == 502 and reply.json()["code"] == "PAYMENT_PROVIDER_ERROR"
    assert orders_of(buyer.user_id) == 0


def test_an_alipay_gateway_that_drops_the_connection_leaves_no_order(alipay: FakeAlipay) -> None:
    plan = new_plan()
    buyer = Buyer()
    alipay.drop_next()
    with capture_logs() as logs:
        reply = buyer.order(plan, "alipay")
    assert reply.status == 502 and reply.json()["code"] == "PAYMENT_PROVIDER_ERROR"
    assert orders_of(buyer.user_id) == 0
    (line,) = logs.where(message="payment provider refused an order")
    assert line["error"] == "alipay.trade.precreate: Alipay unreachable (RemoteDisconnected)"
    assert buyer.order(plan, "alipay").status == 201


# The orders.code column holds 512 characters; both providers' codes are short ASCII URLs.
LONGEST_CODE = "weixin://wxpay/bizpayurl?pr=" + "x" * (512 - 28)
UNHOLDABLE_CODES = {
    "longer than the column": LONGEST_CODE + "x",
    "a lone surrogate": "weixin://wxpay/bizpayurl?pr=\ud800",
    "not ASCII": "weixin://wxpay/bizpayurl?pr=\u00e9",
}


def answer_the_next_order_with(
    channel: str, code: str, wechatpay: FakeWechatPay, alipay: FakeAlipay
) -> None:
    """The provider's next answer to a create: success, with `code` as the payable code."""
    if channel == "wechat":
        wechatpay.answer_next(200, {"code_url": code})
    else:
        answer = {"code": "10000", "msg": "Success", "qr_code": code}
        alipay.answer_next(200, alipay.sim.signed_answer("alipay.trade.precreate", answer))


@pytest.mark.parametrize("case", list(UNHOLDABLE_CODES))
@pytest.mark.parametrize("channel", ["wechat", "alipay"])
def test_a_payable_code_no_order_can_hold_is_a_provider_error_and_leaves_no_order(
    wechatpay: FakeWechatPay, alipay: FakeAlipay, channel: str, case: str
) -> None:
    buyer = Buyer()
    answer_the_next_order_with(channel, UNHOLDABLE_CODES[case], wechatpay, alipay)
    reply = buyer.order(new_plan(), channel)
    assert reply.status == 502 and reply.json()["code"] == "PAYMENT_PROVIDER_ERROR"
    assert orders_of(buyer.user_id) == 0


@pytest.mark.parametrize("channel", ["wechat", "alipay"])
def test_a_payable_code_as_long_as_the_column_is_held(
    wechatpay: FakeWechatPay, alipay: FakeAlipay, channel: str
) -> None:
    assert orders.c.code.type.length == len(LONGEST_CODE)
    answer_the_next_order_with(channel, LONGEST_CODE, wechatpay, alipay)
    reply = Buyer().order(new_plan(), channel)
    assert reply.status == 201, reply.body
    assert order_row(reply.json()["id"])["code"] == LONGEST_CODE


def test_a_channel_that_is_not_configured_is_a_provider_error() -> None:
    with settings_env(WECHATPAY_API_BASE=None, ALIPAY_GATEWAY=None):
        reply = Buyer().order(new_plan(), "alipay")
    assert reply.status == 502 and reply.json()["code"] == "PAYMENT_PROVIDER_ERROR"


def test_an_idempotency_key_replays_the_first_order(wechatpay: FakeWechatPay) -> None:
    plan = new_plan()
    buyer = Buyer()
    first = buyer.order(plan, "wechat", key="buy-1")
    again = buyer.order(plan, "wechat", key="buy-1")
    assert first.status == again.status == 201
    assert again.json() == first.json()
    assert len(wechatpay.sim.trades) == 1 and orders_of(buyer.user_id) == 1
    other = buyer.order(plan, "alipay", key="buy-1")
    assert other.status == 409 and other.json()["code"] == "IDEMPOTENCY_KEY_MISMATCH"
    # Keys are the user's own.
    assert Buyer().order(plan, "wechat", key="buy-1").json()["id"] != first.json()["id"]


def test_concurrent_duplicates_make_one_order_and_close_the_other_trades(
    wechatpay: FakeWechatPay,
) -> None:
    plan = new_plan()
    buyer = Buyer()
    replies = []
    start = threading.Barrier(6)

    def buy() -> None:
        start.wait()
        replies.append(buyer.order(plan, "wechat", key="same"))

    threads = [threading.Thread(target=buy) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert {r.status for r in replies} == {201}
    assert len({r.json()["id"] for r in replies}) == 1
    assert orders_of(buyer.user_id) == 1
    kept = replies[0].json()["id"]
    assert wechatpay.sim.trades[kept].state == "NOTPAY"
    others = [t for no, t in wechatpay.sim.trades.items() if no != kept]
    assert all(t.state == "CLOSED" for t in others)


def test_a_user_makes_at_most_orders_per_user_per_hour_trades(wechatpay: FakeWechatPay) -> None:
    plan = new_plan()
    buyer = Buyer()
    with settings_env(ORDERS_PER_USER_PER_HOUR="2"):
        first = buyer.order(plan, "wechat", key="buy-1")
        assert first.status == 201 and buyer.order(plan, "wechat").status == 201
        refused = buyer.order(plan, "wechat")
        assert refused.status == 429 and refused.json()["code"] == "RATE_LIMITED"
        assert 3500 <= int(refused.headers["Retry-After"]) <= 3600
        # Nothing was asked of the provider, nothing written.
        assert len(wechatpay.sim.trades) == 2 and orders_of(buyer.user_id) == 2
        # A replay makes no trade, so it is answered past the limit, and counts nothing.
        again = buyer.order(plan, "wechat", key="buy-1")
        assert again.status == 201 and again.json() == first.json()
        # The limit is the user's own.
        assert Buyer().order(plan, "wechat").status == 201


def test_another_users_order_is_not_found(wechatpay: FakeWechatPay) -> None:
    order = Buyer().order(new_plan(), "wechat").json()
    reply = Buyer().get(order["id"])
    assert reply.status == 404 and reply.json()["code"] == "NOT_FOUND"
    assert Buyer().get("no-such-order").status == 404


def test_an_order_id_with_a_trailing_space_is_not_the_order(wechatpay: FakeWechatPay) -> None:
    # The database compares strings with trailing spaces ignored.
    buyer = Buyer()
    order = buyer.order(new_plan(), "wechat").json()
    reply = buyer.get(order["id"] + " ")
    assert reply.status == 404 and reply.json()["code"] == "NOT_FOUND"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"plan_id": "p", "channel": "paypal"}, "channel"),
        ({"plan_id": "", "channel": "wechat"}, "plan_id"),
        ({"channel": "wechat"}, "plan_id"),
        ({"plan_id": "p", "channel": "wechat", "coupon": "x"}, "coupon"),
    ],
)
def test_bad_orders_are_refused(body: dict[str, str], field: str) -> None:
    buyer = Buyer()
    reply = call(handler("orders"), "POST", "/orders", body=body, token=buyer.token)
    assert reply.status == 422 and reply.json()["details"][0]["loc"] == ["body", field]
    assert orders_of(buyer.user_id) == 0


def test_orders_need_a_user() -> None:
    body = json.dumps({"plan_id": "p", "channel": "wechat"})
    assert call(handler("orders"), "POST", "/orders", raw_body=body).status == 401
    assert call(handler("orders-id"), "GET", "/orders/x").status == 401
