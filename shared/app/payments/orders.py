"""Orders: buying a plan (`POST /orders`) and reading one's own (`GET /orders/{id}`).

A purchase asks the provider first and writes the order after: the provider's trade is
made with a fresh order id as its out_trade_no, the plan's price at that moment, and the
order's expiry as its own; only when the provider has answered with a payable code is the
order inserted (with the Idempotency-Key, in one transaction), which a lock conflict runs
again, alone, the key still claimed (`idempotency.keyed_write`): the trade is asked for
once. So a provider failure (`502 PAYMENT_PROVIDER_ERROR`) leaves no order behind, and a
trade whose order was never written (a duplicate that lost the key, a conflict no try
resolved, a database failure) is closed at the provider, once, and was never shown to
anyone, so nobody can pay it. The close is skipped (logged) when the invocation has too
little left for it to end before the answer is due; the provider expires the trade at the
order's expiry in any case.

A write whose connection was lost at COMMIT (`CommitInDoubt`, 503) may have written the
order: its trade is left open, so that the client's retry with its Idempotency-Key, which
is answered the order if it was committed, shows a code that can be paid. If it was not
committed, the trade was shown to no one and expires as above.

Each order made is a trade at the provider, so a user makes at most
ORDERS_PER_USER_PER_HOUR of them an hour (`429 RATE_LIMITED` with Retry-After past it),
counted before the provider is asked; a replayed Idempotency-Key makes none and counts none.

An order id is 32 hex digits: both providers accept it as out_trade_no (Alipay takes only
letters, digits and underscores).
"""

from __future__ import annotations

import logging
import re
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import select

from app import idempotency
from app.clock import iso, time_left, utcnow
from app.config import get_settings
from app.db.conflicts import ANSWER_MARGIN_S
from app.db.tables import orders
from app.db.transaction import CommitInDoubt, Transaction, transaction
from app.errors import AppError, ErrorCode
from app.observability import logging as applog
from app.observability.metrics import ORDERS, PAYMENT_PROVIDER_CALLS
from app.payments import plans, providers, reconcile
from app.payments.gateway import Channel, Charge, ProviderError

log = applog.get_logger("app.payments.orders")
IDEMPOTENCY_SCOPE = "orders"


def new_order_id() -> str:
    return secrets.token_hex(16)


_ORDER_ID = re.compile(r"[0-9a-f]{32}")


@dataclass(frozen=True)
class Created:
    """The order a purchase made, or for a known key the one its first request made."""

    order: dict[str, Any]
    replayed: bool


def view(row: Any) -> dict[str, Any]:
    """An order as clients see it: the code of its own channel, the other one null."""
    channel = row["channel"]
    return {
        "id": row["id"],
        "plan_id": row["plan_id"],
        "channel": channel,
        "amount_fen": int(row["amount_fen"]),
        "status": row["status"],
        "code_url": row["code"] if channel == "wechat" else None,
        "qr_code": row["code"] if channel == "alipay" else None,
        "created_at": iso(row["created_at"]),
        "paid_at": iso(row["paid_at"]),
        "expires_at": iso(row["expires_at"]),
    }


def provider_error(channel: Channel) -> AppError:
    return AppError(
        ErrorCode.PAYMENT_PROVIDER_ERROR,
        f"The payment provider ({channel}) could not be reached; try again.",
    )


def create(user_id: str, plan_id: str, channel: Channel, key: str | None = None) -> Created:
    """A pending order for the plan, payable through `channel`; with an Idempotency-Key
    (validated by the caller) the first request's order for a known key."""
    digest = idempotency.request_hash({"plan_id": plan_id, "channel": channel})
    answered = idempotency.create_once(
        user_id,
        IDEMPOTENCY_SCOPE,
        key,
        digest,
        lambda: _create_once(user_id, plan_id, channel, key, digest),
    )
    return Created(answered.response, replayed=answered.replayed)


def _take_rate(user_id: str, key: str | None, digest: str) -> None:
    """Count one trade asked of a provider for the user, or raise RATE_LIMITED
    (`idempotency.take_hourly`: a duplicate of a keyed request whose order is being written gets
    that request's answer; one sent while the first still waits for the provider is
    refused, the first having claimed nothing yet). A count stays taken whatever the
    provider answers: a failing provider is asked no more often."""
    idempotency.take_hourly(
        f"orders:rate:{user_id}",
        get_settings().orders_per_user_per_hour,
        "Too many orders; try again later.",
        user_id=user_id,
        scope=IDEMPOTENCY_SCOPE,
        key=key,
        digest=digest,
    )


def _create_once(
    user_id: str, plan_id: str, channel: Channel, key: str | None, digest: str
) -> dict[str, Any]:
    with transaction() as tx:
        plan = plans.get(tx, plan_id)
    if plan is None or not plan.enabled:
        raise AppError(ErrorCode.PLAN_NOT_FOUND, "No such plan.")
    _take_rate(user_id, key, digest)
    order_id = new_order_id()
    now = utcnow()
    charge = Charge(
        order_id=order_id,
        amount_fen=plan.price_fen,
        description=plan.name,
        expires_at=now + timedelta(seconds=get_settings().order_expiry_s),
    )
    code = _ask_provider(channel, charge)
    row = {
        "id": order_id,
        "user_id": user_id,
        "plan_id": plan.id,
        "plan_name": plan.name,
        "channel": channel,
        "amount_fen": plan.price_fen,
        "duration_days": plan.duration_days,
        "quota": plan.quota,
        "status": "pending",
        "code": code,
        "created_at": now,
        "expires_at": charge.expires_at,
        "updated_at": now,
    }
    try:
        # A lock conflict writes the order again, not the count or the trade before it.
        return idempotency.keyed_write(
            user_id,
            IDEMPOTENCY_SCOPE,
            key,
            digest,
            lambda tx: _write(tx, user_id, channel, row, key),
        )
    except CommitInDoubt:
        # The order may be written, and then its trade must stay payable; if it is not, the
        # trade, shown to no one, expires with the order's expiry.
        raise
    except BaseException:
        # The key was taken meanwhile, a conflict no try resolved, the database: the trade
        # has no order.
        _abandon(channel, order_id)
        raise


def _write(
    tx: Transaction, user_id: str, channel: Channel, row: dict[str, Any], key: str | None
) -> dict[str, Any]:
    """The order inserted and the key's answer recorded, in the transaction that claimed
    the key; what the order shows."""
    order_id = row["id"]
    tx.execute(orders.insert().values(**row))
    shown = view({**row, "paid_at": None})
    if key is not None:
        idempotency.record(tx, user_id, IDEMPOTENCY_SCOPE, key, shown, order_id)
    tx.after_commit(lambda: ORDERS.labels(channel, "pending").inc(), order_id=order_id)
    return shown


def get(user_id: str, order_id: str) -> dict[str, Any]:
    """One of the user's orders (another user's is `404`). A pending one old enough is
    checked with the provider first (`app.payments.reconcile`). An id not of the shape
    `new_order_id` gives is `404` unread: the database compares ids with trailing spaces
    ignored."""
    if _ORDER_ID.fullmatch(order_id) is None:
        raise AppError(ErrorCode.NOT_FOUND, "Order not found.")
    with transaction() as tx:
        row = (
            tx.execute(select(orders).where(orders.c.id == order_id, orders.c.user_id == user_id))
            .mappings()
            .first()
        )
    if row is None:
        raise AppError(ErrorCode.NOT_FOUND, "Order not found.")
    if row["status"] == "pending":
        row = reconcile.on_read(row)
    return view(row)


def _ask_provider(channel: Channel, charge: Charge) -> str:
    try:
        code = providers.gateway(channel).create(charge)
    except ProviderError as error:
        PAYMENT_PROVIDER_CALLS.labels(channel, "create", "error").inc()
        applog.log_fields(
            log,
            logging.ERROR,
            "payment provider refused an order",
            order_id=charge.order_id,
            channel=channel,
            error=str(error),
        )
        raise provider_error(channel) from None
    PAYMENT_PROVIDER_CALLS.labels(channel, "create", "ok").inc()
    return code


def _abandon(channel: Channel, order_id: str) -> None:
    """Close a trade whose order was not written (best effort: unshown, nobody can pay it,
    and the provider expires it at the order's expiry in any case), unless the close, which
    may wait for the provider's timeout, could end after the invocation does."""
    try:
        gateway = providers.gateway(channel)
        left = time_left()
        if left is not None and left < gateway.timeout_s + ANSWER_MARGIN_S:
            applog.log_fields(
                log,
                logging.WARNING,
                "an unwritten order's trade left to expire",
                order_id=order_id,
                channel=channel,
                time_left_s=round(left, 3),
            )
            return
        gateway.close(order_id)
    except ProviderError as error:
        applog.log_fields(
            log,
            logging.WARNING,
            "an unwritten order's trade could not be closed",
            order_id=order_id,
            channel=channel,
            error=str(error),
        )
