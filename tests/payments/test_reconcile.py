"""Reconciliation: a lost notification is settled by `GET /orders/{id}` and by the
`order-reconcile` job, the provider is asked about an order at most once per 10 s whoever
asks, and an expired order is closed at the provider."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from app.payments.wechatpay import TIMEOUT_S as WECHATPAY_TIMEOUT_S
from app.quota import grant
from app.quota.service import QUOTA_MAX
from tests.fakes.alipay import FakeAlipay
from tests.fakes.wechatpay import FakeWechatPay
from tests.support.functions import admin_job, handler
from tests.support.logs import capture_logs
from tests.support.payments import (
    Buyer,
    admin_token,
    age_order,
    alipay_notify,
    new_plan,
    order_row,
    wechat_notify,
)
from tests.support.quota import counters, new_user


def queries(fake: FakeWechatPay, order_id: str) -> int:
    return sum(
        1 for r in fake.requests if r.method == "GET" and f"/out-trade-no/{order_id}" in r.path
    )


def run_job() -> dict[str, Any]:
    reply = admin_job("order-reconcile", admin_token())
    assert reply.status == 200, reply.body
    report = dict(reply.json())
    assert report.pop("job") == "order-reconcile"
    return report


def test_a_lost_notification_is_settled_by_reading_the_order(wechatpay: FakeWechatPay) -> None:
    buyer = Buyer()
    order_id = buyer.order(new_plan(quota=20), "wechat").json()["id"]
    wechatpay.pay(order_id)  # paid; the notification never arrives
    assert buyer.get(order_id).json()["status"] == "pending"  # too young to ask
    assert queries(wechatpay, order_id) == 0
    age_order(order_id, 11)
    order = buyer.get(order_id).json()
    assert order["status"] == "paid" and order["paid_at"]
    assert counters(buyer.user_id) == (20, 0)
    assert queries(wechatpay, order_id) == 1


def test_the_provider_is_asked_at_most_once_per_ten_seconds(wechatpay: FakeWechatPay) -> None:
    buyer = Buyer()
    order_id = buyer.order(new_plan(), "wechat").json()["id"]
    age_order(order_id, 11)
    for _ in range(3):
        assert buyer.get(order_id).json()["status"] == "pending"
    run_job()  # the read just asked: the job waits its turn for this order
    assert queries(wechatpay, order_id) == 1
    age_order(order_id, 61)  # the last check is 10 s behind too
    assert buyer.get(order_id).json()["status"] == "pending"
    assert queries(wechatpay, order_id) == 2


def test_a_provider_that_is_down_leaves_the_order_as_it_was(wechatpay: FakeWechatPay) -> None:
    buyer = Buyer()
    order_id = buyer.order(new_plan(), "wechat").json()["id"]
    age_order(order_id, 11)
    wechatpay.down()
    with capture_logs() as logs:
        reply = buyer.get(order_id)
    assert reply.status == 200 and reply.json()["status"] == "pending"
    assert logs.where(message="payment provider query failed", order_id=order_id)


def test_the_job_pays_what_was_paid_and_closes_what_expired(wechatpay: FakeWechatPay) -> None:
    buyer = Buyer()
    plan = new_plan(quota=5)
    paid = buyer.order(plan, "wechat").json()["id"]
    unpaid = buyer.order(plan, "wechat").json()["id"]
    expired = buyer.order(plan, "wechat").json()["id"]
    young = buyer.order(plan, "wechat").json()["id"]
    wechatpay.pay(paid)
    wechatpay.pay(young)  # paid, but younger than 60 s: the job leaves it to the notification
    for order_id in (paid, unpaid):
        age_order(order_id, 61)
    age_order(expired, 1801)
    report = run_job()
    assert report["checked"] >= 2 and report["paid"] >= 1 and report["closed"] >= 1
    assert order_row(paid)["status"] == "paid"
    assert order_row(unpaid)["status"] == "pending"
    assert order_row(young)["status"] == "pending"
    assert order_row(expired)["status"] == "closed"
    assert wechatpay.sim.trades[expired].state == "CLOSED"
    assert counters(buyer.user_id) == (5, 0)
    assert buyer.get(expired).json()["status"] == "closed"


def test_an_expired_order_that_the_client_keeps_polling_is_closed(
    wechatpay: FakeWechatPay,
) -> None:
    buyer = Buyer()
    order_id = buyer.order(new_plan(), "wechat").json()["id"]
    age_order(order_id, 1801)
    seen = []
    for _ in range(3):  # a poll (taking the order's turn to ask), then the job, and again
        seen.append(buyer.get(order_id).json()["status"])
        run_job()
        age_order(order_id, 11)
    assert seen == ["closed"] * 3  # the poll itself closed it
    assert order_row(order_id)["status"] == "closed"
    assert wechatpay.sim.trades[order_id].state == "CLOSED"


@pytest.mark.parametrize("path", ["job", "read"])
def test_an_expired_order_paid_at_the_last_moment_is_paid_not_closed(
    wechatpay: FakeWechatPay, path: str
) -> None:
    buyer = Buyer()
    order_id = buyer.order(new_plan(quota=3), "wechat").json()["id"]
    wechatpay.pay(order_id)
    age_order(order_id, 1801)
    if path == "job":
        assert run_job()["paid"] >= 1
    else:  # the read closes an expired order as the job does: the refused close pays it
        assert buyer.get(order_id).json()["status"] == "paid"
    assert order_row(order_id)["status"] == "paid"
    assert counters(buyer.user_id) == (3, 0)


def test_the_job_settles_alipay_orders_too(alipay: FakeAlipay) -> None:
    buyer = Buyer()
    plan = new_plan(quota=4)
    paid = buyer.order(plan, "alipay").json()["id"]
    expired = buyer.order(plan, "alipay").json()["id"]
    alipay.sim.scan(paid)
    alipay.sim.pay(paid)
    age_order(paid, 61)
    age_order(expired, 1801)
    run_job()
    assert order_row(paid)["status"] == "paid"
    assert order_row(expired)["status"] == "closed"
    assert counters(buyer.user_id) == (4, 0)


def test_the_timer_runs_the_same_job(wechatpay: FakeWechatPay) -> None:
    buyer = Buyer()
    order_id = buyer.order(new_plan(), "wechat").json()["id"]
    age_order(order_id, 1801)
    answer = handler("order-reconcile")({"Type": "Timer", "TriggerName": "order-reconcile"}, {})
    assert answer["closed"] >= 1
    assert order_row(order_id)["status"] == "closed"


def test_an_expired_alipay_order_paid_at_the_last_moment_is_asked_about_once(
    alipay: FakeAlipay,
) -> None:
    """Alipay refuses to close a paid trade with the same code as a closed one, so the
    adapter queries to tell: the job pays with that answer instead of asking again."""
    buyer = Buyer()
    order_id = buyer.order(new_plan(quota=2), "alipay").json()["id"]
    alipay.sim.scan(order_id)
    alipay.sim.pay(order_id)
    age_order(order_id, 1801)

    def queries() -> int:  # of this order: the job also meets other tests' due orders
        calls = alipay.gateway_calls("alipay.trade.query")
        return sum(1 for c in calls if c.biz.get("out_trade_no") == order_id)

    before = queries()
    report = run_job()
    assert report["paid"] >= 1 and order_row(order_id)["status"] == "paid"
    assert queries() == before + 1
    assert counters(buyer.user_id) == (2, 0)


def test_an_order_past_the_quota_ceiling_is_paid_and_the_job_goes_on(
    wechatpay: FakeWechatPay,
) -> None:
    buyer = Buyer()
    grant(buyer.user_id, QUOTA_MAX - 2, kind="admin", reason="test funding")
    plan = new_plan(quota=5)
    overflowing = buyer.order(plan, "wechat").json()["id"]
    expired = buyer.order(plan, "wechat").json()["id"]
    wechatpay.pay(overflowing)  # paid; the notification never arrives
    age_order(overflowing, 3600)  # the older: the job meets it first
    age_order(expired, 1801)
    report = run_job()
    assert report["paid"] >= 1 and report["closed"] >= 1
    assert order_row(overflowing)["status"] == "paid"
    assert counters(buyer.user_id) == (QUOTA_MAX, 0)
    assert order_row(expired)["status"] == "closed"
    assert wechatpay.sim.trades[expired].state == "CLOSED"


def test_an_order_that_fails_unexpectedly_does_not_stop_the_job(
    wechatpay: FakeWechatPay,
) -> None:
    buyer = Buyer()
    plan = new_plan(quota=5)
    failing = buyer.order(plan, "wechat").json()["id"]
    expired = buyer.order(plan, "wechat").json()["id"]
    wechatpay.pay(failing)
    # Nothing a provider sends fails the settlement any more: the ledger already holding
    # this order's reference for another user (409 IDEMPOTENCY_KEY_MISMATCH) does.
    grant(new_user(), 1, kind="admin", reason="test collision", ref=f"order:{failing}")
    age_order(failing, 3600)  # the older: the job meets it first
    age_order(expired, 1801)
    with capture_logs() as logs:
        report = run_job()
    assert set(report) == {"checked", "paid", "closed"} and report["closed"] >= 1
    assert order_row(expired)["status"] == "closed"
    assert wechatpay.sim.trades[expired].state == "CLOSED"
    assert order_row(failing)["status"] == "pending"
    assert counters(buyer.user_id) == (0, 0)
    failed = logs.where(message="order reconciliation failed", order_id=failing)
    assert len(failed) == 1 and failed[0]["level"] == "error"
    assert "Traceback" not in logs.text


# What no order can record: longer than the provider_trade_id column (WeChat Pay's and
# Alipay's have 28 digits).
UNRECORDABLE_TRADE_ID = "4200" + "0" * 61


def asked_and_refused_loudly(path: str, buyer: Buyer, order_id: str, field: str) -> bool:
    """Whether, once the order is due and the job (or the buyer's read) asks about it, the
    answer changed nothing (the read answers 200 pending) and one ERROR line says it
    carries `field` we cannot take, with no unexpected failure."""
    age_order(order_id, 61)
    read_pending = True
    with capture_logs() as logs:
        if path == "job":
            run_job()
        else:
            reply = buyer.get(order_id)
            read_pending = (reply.status, reply.json()["status"]) == (200, "pending")
    (line,) = logs.where(message="payment provider query failed", order_id=order_id)
    unexpected = logs.where(message="order reconciliation failed", order_id=order_id)
    unchanged = order_row(order_id)["status"] == "pending" and counters(buyer.user_id) == (0, 0)
    loud = line["level"] == "error" and field in line["error"] and not unexpected
    return read_pending and unchanged and loud


@pytest.mark.parametrize("path", ["job", "read"])
def test_a_wechat_answer_with_a_transaction_id_no_order_can_record_changes_nothing(
    wechatpay: FakeWechatPay, path: str
) -> None:
    buyer = Buyer()
    order_id = buyer.order(new_plan(quota=5), "wechat").json()["id"]
    wechatpay.pay(order_id)  # paid; the notification never arrives
    wechatpay.sim.trades[order_id].transaction_id = UNRECORDABLE_TRADE_ID
    assert asked_and_refused_loudly(path, buyer, order_id, "transaction_id")


@pytest.mark.parametrize("path", ["job", "read"])
def test_an_alipay_answer_with_a_trade_no_no_order_can_record_changes_nothing(
    alipay: FakeAlipay, path: str
) -> None:
    buyer = Buyer()
    order_id = buyer.order(new_plan(quota=5), "alipay").json()["id"]
    alipay.sim.scan(order_id)
    alipay.sim.pay(order_id)
    alipay.sim.trades[order_id].trade_no = UNRECORDABLE_TRADE_ID
    assert asked_and_refused_loudly(path, buyer, order_id, "trade_no")


def test_reading_an_expired_order_while_the_provider_does_not_answer_takes_one_timeout(
    wechatpay: FakeWechatPay,
) -> None:
    """The close gets no answer in its 5 s: the read answers the order as it stands, within
    the 10 s SCF gives GET /orders/{id}, rather than ask again for as long; the next turn
    closes it."""
    buyer = Buyer()
    order_id = buyer.order(new_plan(), "wechat").json()["id"]
    age_order(order_id, 1801)
    wechatpay.down("stall")
    started = time.monotonic()
    reply = buyer.get(order_id)
    elapsed = time.monotonic() - started
    wechatpay.up()
    assert reply.status == 200 and reply.json()["status"] == "pending"
    assert WECHATPAY_TIMEOUT_S <= elapsed < WECHATPAY_TIMEOUT_S + 2.5
    age_order(order_id, 11)
    assert buyer.get(order_id).json()["status"] == "closed"
    assert wechatpay.sim.trades[order_id].state == "CLOSED"


def refunded_before_its_notification_came(
    channel: str, wechatpay: FakeWechatPay, alipay: FakeAlipay, buyer: Buyer
) -> tuple[str, Callable[[], str]]:
    """An order paid whose notification never arrived, its payment refunded at the provider
    (WeChat Pay: REFUND; Alipay: the fully refunded trade is TRADE_CLOSED); the order and a
    delivery of the success notification as the provider retries it."""
    order_id = str(buyer.order(new_plan(quota=30), channel).json()["id"])
    if channel == "wechat":
        wechatpay.pay(order_id)
        wechatpay.sim.trades[order_id].state = "REFUND"

        def deliver() -> str:
            sent = wechatpay.sim.notification(order_id)
            return str(wechat_notify(sent.lower_headers, sent.body).json()["code"])

    else:
        alipay.sim.scan(order_id)
        alipay.sim.pay(order_id)
        alipay.sim.trades[order_id].status = "TRADE_CLOSED"

        def deliver() -> str:
            sent = alipay.sim.notification(order_id, trade_status="TRADE_SUCCESS")
            return alipay_notify(sent.body).body

    return order_id, deliver


@pytest.mark.parametrize("channel", ["wechat", "alipay"])
def test_a_payment_refunded_before_it_was_settled_is_not_delivered_by_a_late_notification(
    wechatpay: FakeWechatPay, alipay: FakeAlipay, channel: str
) -> None:
    """The read finds the trade refunded (or closed after a refund) and closes the order; the
    provider's retry of the original success notification is acknowledged and changes
    nothing: the money went back, so no quota or membership is granted for it."""
    buyer = Buyer()
    order_id, deliver = refunded_before_its_notification_came(channel, wechatpay, alipay, buyer)
    age_order(order_id, 11)
    with capture_logs() as read:
        assert buyer.get(order_id).json()["status"] == "closed"
    # WeChat Pay says the trade was refunded, which someone must check was the whole
    # payment; Alipay shows a trade refunded in full as closed, as any other.
    refunds = read.where(order_id=order_id, message="order closed on its trade's refund")
    assert [line["level"] for line in refunds] == (["error"] if channel == "wechat" else [])
    with capture_logs() as logs:
        assert deliver() in ("SUCCESS", "success")  # acknowledged: the provider stops retrying
    row = order_row(order_id)
    assert row["status"] == "closed" and row["paid_at"] is None
    assert counters(buyer.user_id) == (0, 0)
    assert buyer.membership() == (None, None)
    (line,) = logs.where(message="payment notification")
    assert line["outcome"] == "ignored" and line["order_id"] == order_id
    (told,) = logs.where(order_id=order_id, level="error")
    assert told["message"].startswith("payment reported for an order closed")


@pytest.mark.parametrize("path", ["job", "read"])
def test_an_expired_alipay_order_refunded_before_it_was_settled_is_not_delivered_late(
    wechatpay: FakeWechatPay, alipay: FakeAlipay, path: str
) -> None:
    """Past its expiry the order is closed at the provider first: Alipay refuses to close
    the refunded trade (TRADE_CLOSED), the adapter asks, and the order is closed on that
    report, keeping the trade's id, so the retried success notification changes nothing."""
    buyer = Buyer()
    order_id, deliver = refunded_before_its_notification_came("alipay", wechatpay, alipay, buyer)
    age_order(order_id, 1801)
    if path == "job":
        run_job()
    assert buyer.get(order_id).json()["status"] == "closed"
    assert order_row(order_id)["provider_trade_id"] == alipay.sim.trades[order_id].trade_no
    assert deliver() == "success"
    row = order_row(order_id)
    assert row["status"] == "closed" and row["paid_at"] is None
    assert counters(buyer.user_id) == (0, 0)
    assert buyer.membership() == (None, None)


@pytest.mark.parametrize("path", ["job", "read"])
def test_a_paid_trade_of_another_amount_is_not_the_orders_payment_and_is_told_at_error(
    wechatpay: FakeWechatPay, path: str
) -> None:
    buyer = Buyer()
    order_id = buyer.order(new_plan(price_fen=1990, quota=5), "wechat").json()["id"]
    wechatpay.pay(order_id)  # paid; the notification never arrives
    wechatpay.sim.trades[order_id].amount_fen = 1  # and WeChat Pay reports 0.01 paid
    age_order(order_id, 61)
    with capture_logs() as logs:
        if path == "job":
            run_job()
        else:
            reply = buyer.get(order_id)
            assert (reply.status, reply.json()["status"]) == (200, "pending")
    assert order_row(order_id)["status"] == "pending" and counters(buyer.user_id) == (0, 0)
    (line,) = logs.where(message="provider's report does not match the order", order_id=order_id)
    assert line["level"] == "error" and line["via"] == path
    assert line["reason"] == "amount 1 is not the order's 1990"
    assert not logs.where(message="order reconciliation failed", order_id=order_id)


def test_the_job_asks_about_an_expired_order_whose_close_failed_and_pays_it(
    wechatpay: FakeWechatPay, own_database: None
) -> None:
    buyer = Buyer()
    order_id = buyer.order(new_plan(quota=3), "wechat").json()["id"]
    wechatpay.pay(order_id)  # paid; the notification never arrives
    age_order(order_id, 1801)
    wechatpay.answer_next(500, {"code": "SYSTEM_ERROR", "message": "系统错误"})  # the close
    with capture_logs() as logs:
        report = run_job()
    assert report == {"checked": 1, "paid": 1, "closed": 0}
    assert order_row(order_id)["status"] == "paid" and counters(buyer.user_id) == (3, 0)
    (failed,) = logs.where(message="payment provider close failed", order_id=order_id)
    assert (
        failed["level"] == "warning"
        and failed["error"] == "WeChat Pay close: HTTP 500 SYSTEM_ERROR"
    )
    calls = [(r.method, r.path.rsplit("/", 1)[-1]) for r in wechatpay.requests[-2:]]
    assert calls[0] == ("POST", "close") and calls[1][0] == "GET"


def test_a_read_of_an_expired_order_whose_close_failed_leaves_it_pending(
    wechatpay: FakeWechatPay,
) -> None:
    buyer = Buyer()
    order_id = buyer.order(new_plan(quota=3), "wechat").json()["id"]
    age_order(order_id, 1801)
    wechatpay.answer_next(500, {"code": "SYSTEM_ERROR", "message": "系统错误"})  # the close
    asked = len(wechatpay.requests)
    reply = buyer.get(order_id)
    assert (reply.status, reply.json()["status"]) == (200, "pending")
    assert len(wechatpay.requests) == asked + 1  # the close alone: no query after it
    assert wechatpay.sim.trades[order_id].state == "NOTPAY"


def test_the_query_an_alipay_close_makes_to_find_its_trade_closed_is_counted(
    wechatpay: FakeWechatPay, alipay: FakeAlipay, own_database: None
) -> None:
    """Alipay refuses to close a trade it closed itself (scanned, then past its time_expire):
    the adapter asks what it is, and the run's `checked` counts that query, as it does the
    one that finds such a trade paid."""
    buyer = Buyer()
    order_id = buyer.order(new_plan(quota=3), "alipay").json()["id"]
    alipay.sim.scan(order_id)
    alipay.sim.trades[order_id].status = "TRADE_CLOSED"
    age_order(order_id, 1801)
    report = run_job()
    assert len(alipay.gateway_calls("alipay.trade.query")) == 1
    assert report == {"checked": 1, "paid": 0, "closed": 1}
    assert order_row(order_id)["status"] == "closed" and counters(buyer.user_id) == (0, 0)


def test_an_alipay_close_whose_query_fails_asks_nothing_more_in_that_turn(
    wechatpay: FakeWechatPay, alipay: FakeAlipay, own_database: None
) -> None:
    """A turn's time (`ORDER_MAX_S`) holds a close and one query: an expired order whose
    close Alipay refuses (its trade moved on) and whose query, made to tell how, fails is
    asked about again by the next run, not a third time in this turn."""
    buyer = Buyer()
    order_id = buyer.order(new_plan(quota=3), "alipay").json()["id"]
    alipay.sim.scan(order_id)
    alipay.sim.pay(order_id)  # paid; the notification lost
    age_order(order_id, 1801)
    refused = {
        "code": "40004",
        "msg": "Business Failed",
        "sub_code": "ACQ.TRADE_STATUS_ERROR",
        "sub_msg": "交易状态不合法",
    }
    alipay.answer_next(200, alipay.sim.signed_answer("alipay.trade.close", refused))
    alipay.answer_next(502, "bad gateway")
    asked = len(alipay.requests)
    with capture_logs() as logs:
        assert run_job() == {"checked": 0, "paid": 0, "closed": 0}
    assert len(alipay.requests) == asked + 2
    assert logs.where(message="payment provider query failed", order_id=order_id)
    assert order_row(order_id)["status"] == "pending"
    age_order(order_id, 60)  # the next run's minute
    assert run_job() == {"checked": 1, "paid": 1, "closed": 0}
    assert counters(buyer.user_id) == (3, 0)
