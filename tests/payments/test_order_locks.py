"""A payment and the reconciliation's claim or close of the same order at the same moment
wait on each other and never deadlock, whatever plan MariaDB picks for their statements; two
payments of one user at once both count.

In a database of its own: with the order the only pending one, MariaDB plans `WHERE id = ?
AND status = 'pending'` through ix_orders_status_created, which is what made the claim and
the close lock that index's entry before the row a payment holds."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import select, update

from app.db.tables import orders
from app.db.transaction import transaction
from app.payments import reconcile
from tests.fakes.wechatpay import FakeWechatPay
from tests.payments.test_notifications import grants
from tests.support.payments import Buyer, age_order, new_plan, order_row, wechat_notify
from tests.support.quota import counters

# How long the holder waits for the other side to be blocked on the order before it goes on.
BLOCKED_S = 0.5


def pending_order(buyer: Buyer, *, age_s: float) -> str:
    reply = buyer.order(new_plan(quota=40), "wechat")
    assert reply.status == 201, reply.body
    order_id = str(reply.json()["id"])
    age_order(order_id, age_s)
    return order_id


def while_a_payment_holds_the_order(order_id: str, other: Callable[[], Any]) -> list[Any]:
    """`other` run while a transaction holds the order's row as a payment does (locked by its
    id, then its status moved to paid, then committed); what `other` returned or raised."""
    outcome: list[Any] = []

    def run_other() -> None:
        try:
            outcome.append(other())
        except Exception as error:
            outcome.append(error)

    thread = threading.Thread(target=run_other)
    try:
        with transaction() as tx:
            tx.execute(select(orders).where(orders.c.id == order_id).with_for_update()).one()
            thread.start()
            time.sleep(BLOCKED_S)  # the other side is waiting on the order now
            tx.execute(
                update(orders)
                .where(orders.c.id == order_id, orders.c.status == "pending")
                .values(status="paid")
            )
    finally:
        thread.join()
    return outcome


def test_a_claim_waits_for_a_payment_and_then_finds_the_order_paid(own_database: None) -> None:
    order_id = pending_order(Buyer(), age_s=120)
    assert while_a_payment_holds_the_order(order_id, lambda: reconcile._claim(order_id)) == [False]
    row = order_row(order_id)
    assert row["status"] == "paid" and row["checked_at"] is None


def test_a_close_waits_for_a_payment_and_then_leaves_the_order_paid(own_database: None) -> None:
    order_id = pending_order(Buyer(), age_s=3600)
    row = order_row(order_id)
    assert while_a_payment_holds_the_order(order_id, lambda: reconcile._mark_closed(row)) == [False]
    assert order_row(order_id)["status"] == "paid"


def at_once(*calls: Callable[[], Any]) -> list[Any]:
    """Each call on its own thread, all released together; what each returned or raised."""
    start = threading.Barrier(len(calls))
    outcome: list[Any] = []

    def run(call: Callable[[], Any]) -> None:
        start.wait()
        try:
            outcome.append(call())
        except Exception as error:
            outcome.append(error)

    threads = [threading.Thread(target=run, args=(call,)) for call in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcome


def test_a_notification_the_read_and_the_job_at_once_pay_the_order_once(
    own_database: None, wechatpay: FakeWechatPay
) -> None:
    buyer = Buyer()
    for _ in range(4):
        order_id = pending_order(buyer, age_s=120)
        genuine = wechatpay.pay(order_id)

        def notify(genuine: Any = genuine) -> int:
            return wechat_notify(genuine.lower_headers, genuine.body).status

        def read(order_id: str = order_id) -> int:
            return buyer.get(order_id).status

        outcome = at_once(notify, notify, read, read, reconcile.run, reconcile.run)
        assert outcome.count(200) == 4, outcome
        assert all(isinstance(report, dict) for report in outcome if report != 200), outcome
        assert order_row(order_id)["status"] == "paid" and grants(order_id) == 1
    assert counters(buyer.user_id) == (4 * 40, 0)


def test_two_orders_of_one_user_paid_at_once_both_count(wechatpay: FakeWechatPay) -> None:
    """Each payment reads the membership and the balance under the user's row lock: neither
    extends from, nor adds to, what the other is about to replace."""
    buyer = Buyer()
    month = buyer.order(new_plan(quota=10, duration_days=30), "wechat").json()["id"]
    quarter = buyer.order(new_plan(quota=25, duration_days=90), "wechat").json()["id"]
    sent = [wechatpay.pay(month), wechatpay.pay(quarter)]

    def deliver(n: Any) -> int:
        return wechat_notify(n.lower_headers, n.body).status

    assert at_once(*(lambda n=n: deliver(n) for n in sent)) == [200, 200]
    assert counters(buyer.user_id) == (35, 0)
    expires, _ = buyer.membership()
    expected = datetime.now(timezone.utc) + timedelta(days=120)
    assert abs((expires - expected).total_seconds()) < 60
