"""An order-reconcile run is bounded: it takes no order once its budget is spent (the
timer's, from its invocation's time limit), the next run takes the orders the last did not
reach before any it did, and however runs fall (one after another, two at once, with a
notification in between) the provider hears about an order at most once per 10 s and a
payment is granted once.

In a database of their own, so that the due orders are exactly the test's: the provider
answers slowly (`FakeWechatPay.slow`), and the counts are of calls it received."""

from __future__ import annotations

import threading
import time
from typing import Any

from app.payments import reconcile
from tests.fakes.wechatpay import FakeWechatPay
from tests.payments.test_notifications import grants
from tests.payments.test_order_locks import at_once, pending_order
from tests.payments.test_reconcile import queries
from tests.support.functions import handler
from tests.support.payments import Buyer, age_order, order_row, wechat_notify
from tests.support.quota import counters

# Each answer of the slow provider; a run's budget holds two of them. A worker starts an
# order at most every DELAY_S, so a run of BUDGET_S takes at most
# JOB_WORKERS * (BUDGET_S / DELAY_S + 1) orders (12), fewer than ORDERS on any machine.
DELAY_S = 0.25
BUDGET_S = 2 * DELAY_S
ORDERS = 16


def due_orders(buyer: Buyer, count: int) -> list[str]:
    """`count` pending WeChat Pay orders past the job's 60 s, the first the oldest."""
    return [pending_order(buyer, age_s=600 - i) for i in range(count)]


def timer_run(budget_s: float = BUDGET_S) -> dict[str, Any]:
    """The order-reconcile function invoked as SCF invokes it, with a time limit that leaves
    its run `budget_s` to take orders in."""
    limit_s = reconcile.ORDER_MAX_S + reconcile.REPORT_SPARE_S + budget_s
    context = {"function_name": "order-reconcile", "time_limit_in_ms": int(limit_s * 1000)}
    return dict(handler("order-reconcile")({"Type": "Timer"}, context))


def asked(fake: FakeWechatPay, order_ids: list[str]) -> dict[str, int]:
    """How often the provider was asked about each order."""
    return {order_id: queries(fake, order_id) for order_id in order_ids}


def test_a_run_stops_taking_orders_at_its_budget_and_the_next_runs_take_the_rest(
    own_database: None, wechatpay: FakeWechatPay
) -> None:
    order_ids = due_orders(Buyer(), ORDERS)
    wechatpay.slow(DELAY_S)
    first = timer_run()
    after_first = asked(wechatpay, order_ids)
    taken = [order_id for order_id in order_ids if after_first[order_id]]
    assert 0 < first["checked"] == len(taken) < ORDERS
    assert taken == order_ids[: len(taken)]  # none asked yet: the oldest first
    reports = [first]
    while min(asked(wechatpay, order_ids).values()) == 0:
        assert len(reports) < ORDERS, "a run took no order"
        reports.append(timer_run())
    # Each asked once: a run takes the orders the last did not reach, never one asked
    # within 10 s (all of these runs were).
    assert set(asked(wechatpay, order_ids).values()) == {1}
    assert sum(report["checked"] for report in reports) == ORDERS
    assert timer_run()["checked"] == 0


def test_the_next_run_starts_with_the_orders_the_last_did_not_reach(
    own_database: None, wechatpay: FakeWechatPay
) -> None:
    """With the oldest asked and 10 s gone by (each order aged 11 s), the oldest are due
    again, yet the next run asks the rest first: a backlog larger than one run no longer
    has every run start again on the same oldest orders."""
    order_ids = due_orders(Buyer(), ORDERS)
    wechatpay.slow(DELAY_S)
    timer_run()
    reached = {order_id for order_id, n in asked(wechatpay, order_ids).items() if n}
    assert 0 < len(reached) < ORDERS
    for order_id in order_ids:
        age_order(order_id, 11)
    before = asked(wechatpay, order_ids)
    timer_run()
    now = asked(wechatpay, order_ids)
    again = {order_id for order_id in reached if now[order_id] > before[order_id]}
    rest = {order_id for order_id in order_ids if order_id not in reached}
    newly = {order_id for order_id in rest if now[order_id] > before[order_id]}
    assert newly, "the second run asked none of the orders the first did not reach"
    assert not again or newly == rest, (len(again), len(newly), len(rest))


def test_two_runs_at_once_share_the_orders_and_each_is_asked_and_paid_once(
    own_database: None, wechatpay: FakeWechatPay
) -> None:
    """The timer's run and an admin's (or a run outliving its minute) need no run lock:
    each order is claimed as it is taken."""
    buyer = Buyer()
    order_ids = due_orders(buyer, ORDERS)
    for order_id in order_ids[::2]:
        wechatpay.pay(order_id)  # paid; the notification never arrives
    wechatpay.slow(DELAY_S)
    budget_s = 8 * DELAY_S  # room for every order across the two runs
    first, second = at_once(lambda: timer_run(budget_s), lambda: timer_run(budget_s))
    assert first["checked"] > 0 and second["checked"] > 0, (first, second)
    assert first["checked"] + second["checked"] == ORDERS
    assert set(asked(wechatpay, order_ids).values()) == {1}
    assert first["paid"] + second["paid"] == ORDERS // 2
    assert all(grants(order_id) == 1 for order_id in order_ids[::2])
    assert counters(buyer.user_id) == (ORDERS // 2 * 40, 0)


def test_a_notification_while_the_job_asks_about_its_order_pays_it_once(
    own_database: None, wechatpay: FakeWechatPay
) -> None:
    buyer = Buyer()
    (order_id,) = due_orders(buyer, 1)
    genuine = wechatpay.pay(order_id)
    wechatpay.slow(1.0)  # the job's question takes a second: the notification comes first
    reports: list[dict[str, Any]] = []
    job = threading.Thread(target=lambda: reports.append(timer_run(0.5)))
    job.start()
    claimed_by = time.monotonic() + 10
    while order_row(order_id)["checked_at"] is None:  # claimed: its question is on its way
        assert time.monotonic() < claimed_by and job.is_alive(), "the job never took the order"
        time.sleep(0.01)
    assert wechat_notify(genuine.lower_headers, genuine.body).status == 200
    job.join()
    assert reports[0]["checked"] == 1 and reports[0]["paid"] == 0
    assert order_row(order_id)["status"] == "paid" and grants(order_id) == 1
    assert counters(buyer.user_id) == (40, 0)
