"""Paying an order: the one transaction every path that learns of a payment goes through
(a verified notification, the read path's query, the reconcile job).

In it, with the order's row locked: the order moves to `paid` (from `pending`, or from
`closed` when the provider took the money anyway; not from one closed because the provider
reported its trade closed or refunded, whose late success notification is that refunded
payment's and changes nothing), the membership is extended from the
later of now and its current expiry, and the plan's quota is granted through the quota
ledger with `order:<id>` as its unique reference. A repeat, or a duplicate that waited on
the lock, finds the order paid and changes nothing; so does a report whose amount,
currency or channel is not the order's. The cached profile is dropped after the commit.

The money was taken, so the quota ceiling never refuses a payment: a grant that would pass
it grants what fits, the order is paid all the same, and an ERROR line (order, user, the
plan's quota, what was granted) tells an operator what is owed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Literal

from sqlalchemy import select, update

from app import profiles
from app.clock import utcnow
from app.db.tables import orders, users
from app.db.transaction import Transaction, transaction
from app.observability import logging as applog
from app.observability.metrics import ORDERS
from app.payments.gateway import Channel, Report
from app.quota import service as quota

log = applog.get_logger("app.payments.settlement")
# The latest time a membership can end: the end of the calendar MariaDB's DATETIME and
# Python's datetime share.
MEMBERSHIP_MAX = datetime(9999, 12, 31, 23, 59, 59, tzinfo=timezone.utc)

# paid: this call paid it; repeat: it was paid already; ignored: the report is of a state
# other than paid; mismatch: the report is not this order's (amount, currency, channel);
# unknown: no such order.
Outcome = Literal["paid", "repeat", "ignored", "mismatch", "unknown"]


@dataclass(frozen=True)
class Settled:
    outcome: Outcome
    reason: str = ""


def mismatch(order: Any, channel: Channel, report: Report) -> str:
    """Why `report` cannot be this order's payment; empty when it can."""
    if order["channel"] != channel:
        return f"the order was placed with {order['channel']}, not {channel}"
    if report.amount_fen != order["amount_fen"]:
        return f"amount {report.amount_fen} is not the order's {order['amount_fen']}"
    if report.currency != "CNY":
        return f"currency {report.currency} is not CNY"
    return ""


def apply(order_id: str, channel: Channel, report: Report, *, via: str) -> Settled:
    """Check `report` against the order and, when it says paid, pay the order, once: one
    transaction, the order's row locked only for a paid report. `via` names the path for
    the log."""
    paid = report.state == "paid"
    with transaction() as tx:
        query = select(orders).where(orders.c.id == order_id)
        order = tx.execute(query.with_for_update() if paid else query).mappings().first()
        if order is None:
            return Settled("unknown", "no such order")
        why = mismatch(order, channel, report)
        if why:
            return Settled("mismatch", why)
        if not paid:
            return Settled("ignored", f"state {report.state}")
        if order["status"] == "paid":
            return Settled("repeat")
        if order["status"] == "closed" and order["provider_trade_id"] is not None:
            # Closed on the provider's word that its trade was closed or refunded: a trade does
            # not come back from that, so this is that trade's earlier payment reported late
            # (a notification retried after the refund). The money went back to the payer;
            # an operator is told all the same, as for every payment no order shows.
            applog.log_fields(
                log,
                logging.ERROR,
                "payment reported for an order closed on its provider's word: not delivered",
                order_id=order_id,
                channel=channel,
                via=via,
            )
            return Settled("ignored", "the provider reported this trade closed or refunded")
        now = utcnow()
        tx.execute(
            update(orders)
            .where(orders.c.id == order_id, orders.c.status == order["status"])
            .values(
                status="paid",
                paid_at=report.paid_at or now,
                provider_trade_id=report.provider_trade_id,
                updated_at=now,
            )
        )
        _extend_membership(tx, order, now)
        granted = order["quota"]
        if order["quota"] > 0:
            granted = quota.grant(
                order["user_id"],
                order["quota"],
                kind="purchase",
                reason=f"plan {order['plan_id']}",
                ref=f"order:{order_id}",
                up_to_ceiling=True,
                tx=tx,
            ).entry.balance_delta
        tx.after_commit(profiles.forgetter(order["user_id"]), order_id=order_id)
        tx.after_commit(lambda: ORDERS.labels(channel, "paid").inc(), order_id=order_id)
    if granted < order["quota"]:
        applog.log_fields(
            log,
            logging.ERROR,
            "order paid with less quota than its plan gives: the balance is at its ceiling",
            order_id=order_id,
            user_id=order["user_id"],
            plan_quota=order["quota"],
            granted=granted,
        )
    if order["status"] == "closed":
        # The provider took the money for an order we had closed (its close crossed the
        # payment): it is paid, and someone should know it happened.
        applog.log_fields(
            log,
            logging.ERROR,
            "order paid after it was closed",
            order_id=order_id,
            channel=channel,
            via=via,
        )
    return Settled("paid")


def _extend_membership(tx: Transaction, order: Any, now: datetime) -> None:
    user_id = order["user_id"]
    current = tx.execute(
        select(users.c.membership_expires_at).where(users.c.id == user_id).with_for_update()
    ).scalar()
    start = current if current is not None and current > now else now
    days = timedelta(days=int(order["duration_days"]))
    if MEMBERSHIP_MAX - start >= days:
        end = start + days
    else:
        # Years of purchases stacked to the end of the calendar: the order is still paid.
        end = MEMBERSHIP_MAX
        applog.log_fields(
            log,
            logging.ERROR,
            "membership extended to the latest time it can hold",
            order_id=order["id"],
            user_id=user_id,
        )
    tx.execute(
        update(users)
        .where(users.c.id == user_id)
        .values(membership_expires_at=end, membership_plan_id=order["plan_id"], updated_at=now)
    )
