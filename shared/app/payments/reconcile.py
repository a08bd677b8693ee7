"""Reconciliation: a notification can be lost, so orders are also settled by asking.

- The `order-reconcile` job (a timer every minute, and `POST /admin/jobs/order-reconcile`):
  every pending order older than JOB_MIN_AGE_S asks the provider's query API and applies a
  paid answer exactly as a notification would, and every pending order past its
  `expires_at` is closed with the provider's close API (one the provider says was paid
  meanwhile is paid instead).
- The read path (`GET /orders/{id}`): the same for the order read, once it is older than
  RECHECK_S, through the job's own code. An expired one is closed by the read too: a
  client polling it holds its claim, so the job would skip it for as long as the polling
  lasts. A read makes one provider call (two when the close is refused for a payment), so
  it answers within its function's time even when the provider does not answer at all.

Whoever asks, the provider hears about one order at most once per RECHECK_S: moving the
order's `checked_at`, its row locked, is the claim, so concurrent readers and the job on
other instances never ask twice. A provider that cannot be reached changes nothing; the
next read or run asks again. Nor does one order stop the job: anything else that fails for
an order (its provider call, its settlement) is logged at ERROR with its id and the run goes
on; its claim moved `checked_at`, so the run's next batch goes past it and a later run
retries it.
An answer the provider signed that carries a value we cannot take (`UnusableAnswer`)
changes nothing and is logged at ERROR, each time it is asked again.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import or_, select, update

from app.clock import utcnow
from app.db.tables import orders
from app.db.transaction import Transaction, transaction
from app.observability import logging as applog
from app.observability.metrics import ORDERS, PAYMENT_PROVIDER_CALLS
from app.payments import providers, settlement
from app.payments.gateway import Channel, NotClosed, ProviderError, Report, UnusableAnswer

log = applog.get_logger("app.payments.reconcile")
RECHECK_S = 10
JOB_MIN_AGE_S = 60
JOB_BATCH = 200
# The order-reconcile function has 60 s; a run stops asking with time to spare (each
# provider call may take its 5 s).
RUN_BUDGET_S = 45.0


@dataclass
class Counts:
    checked: int = 0  # provider queries made
    paid: int = 0
    closed: int = 0


def on_read(order: Any) -> Any:
    """The order as it stands once its turn was taken (asked about, or closed when past
    `expires_at`, as the job would), when it was due; else as given."""
    now = utcnow()
    if now - order["created_at"] < timedelta(seconds=RECHECK_S):
        return order
    if not _claim(order["id"]):
        return order
    _reconcile(order, Counts(), now, via="read")
    return _reload(order["id"]) or order


def run() -> dict[str, int]:
    """The job: settle what the provider says was paid, close what expired. Batches of the
    oldest due orders whose turn to ask has come (each one asked moves its `checked_at`, so
    the next batch goes on past it) until none is left or RUN_BUDGET_S is spent."""
    counts = Counts()
    ends_at = time.monotonic() + RUN_BUDGET_S
    while time.monotonic() < ends_at:
        now = utcnow()
        with transaction() as tx:
            due = list(
                tx.execute(
                    select(orders)
                    .where(
                        orders.c.status == "pending",
                        or_(
                            orders.c.created_at <= now - timedelta(seconds=JOB_MIN_AGE_S),
                            orders.c.expires_at <= now,
                        ),
                        or_(
                            orders.c.checked_at.is_(None),
                            orders.c.checked_at <= now - timedelta(seconds=RECHECK_S),
                        ),
                    )
                    .order_by(orders.c.created_at, orders.c.id)
                    .limit(JOB_BATCH)
                ).mappings()
            )
        if not due:
            break
        for order in due:
            if time.monotonic() >= ends_at:
                break
            # Outside the guard below: a claim that fails fails for every order (the
            # database), and an order whose claim did not move would be picked again.
            if not _claim(order["id"]):
                continue
            _reconcile(order, counts, now, via="job")
    return {"checked": counts.checked, "paid": counts.paid, "closed": counts.closed}


def run_timer(_event: Any = None) -> dict[str, int]:
    """The timer function's job: the timer wrapper logs and counts the run."""
    return run()


def _claim(order_id: str) -> bool:
    """Take this order's turn to ask the provider; False when it was asked < RECHECK_S ago
    (or it is no longer pending)."""
    now = utcnow()
    with transaction() as tx:
        row = _lock_pending(tx, order_id)
        if row is None or (
            row.checked_at is not None and row.checked_at > now - timedelta(seconds=RECHECK_S)
        ):
            return False
        tx.execute(update(orders).where(orders.c.id == order_id).values(checked_at=now))
        return True


def _lock_pending(tx: Transaction, order_id: str) -> Any:
    """The order's row, locked, when it is pending; else None. Locked by its primary key
    alone, as a payment locks it: an UPDATE naming the status as well may be planned through
    ix_orders_status_created (MariaDB does when few orders are pending), locking that index's
    entry before the row, while a payment holds the row and then needs that entry to move
    the status: a deadlock, which failed the notification, the read or the whole job."""
    row = tx.execute(
        select(orders.c.status, orders.c.checked_at)
        .where(orders.c.id == order_id)
        .with_for_update()
    ).first()
    return row if row is not None and row.status == "pending" else None


def _reconcile(order: Any, counts: Counts, now: datetime, *, via: str) -> None:
    """A claimed order's turn: closed at the provider when past `expires_at` at `now`, else
    asked about. An unexpected failure is this order's alone: logged, not raised (the job
    goes on; a read answers the order as it stands)."""
    try:
        if order["expires_at"] <= now:
            _close(order, counts, via=via)
        else:
            _query_and_apply(order, counts, via=via)
    except Exception as error:  # noqa: BLE001 - one order's failure stops neither the job nor a read
        # The type only: an unknown exception's text may carry anything (SQL, parameters).
        _log(
            logging.ERROR,
            "order reconciliation failed",
            order,
            via=via,
            error=type(error).__name__,
        )


def _query_and_apply(order: Any, counts: Counts, *, via: str) -> None:
    channel: Channel = order["channel"]
    try:
        report = providers.gateway(channel).query(order["id"])
    except ProviderError as error:
        _provider_failed(order, "query", error)
        return
    PAYMENT_PROVIDER_CALLS.labels(channel, "query", "ok").inc()
    counts.checked += 1
    _apply(order, report, counts, via=via)


def _apply(order: Any, report: Report, counts: Counts, *, via: str) -> None:
    channel: Channel = order["channel"]
    if report.order_id != order["id"]:
        _discrepancy(order, via, f"the provider answered for order {report.order_id}")
    elif report.state == "paid":
        settled = settlement.apply(order["id"], channel, report, via=via)
        if settled.outcome == "paid":
            counts.paid += 1
        elif settled.outcome == "mismatch":
            _discrepancy(order, via, settled.reason)
    elif report.state in ("closed", "refunded") and _mark_closed(order):
        # The provider will never take this payment: the order can no longer be paid.
        counts.closed += 1


def _close(order: Any, counts: Counts, *, via: str) -> None:
    channel: Channel = order["channel"]
    try:
        providers.gateway(channel).close(order["id"])
    except NotClosed as refused:
        # Paid at the last moment: pay the order, with what the adapter already asked when
        # it did (one question per order per claim).
        PAYMENT_PROVIDER_CALLS.labels(channel, "close", "ok").inc()
        if refused.report is None:
            _query_and_apply(order, counts, via=via)
        else:
            counts.checked += 1
            _apply(order, refused.report, counts, via=via)
        return
    except ProviderError as error:
        _provider_failed(order, "close", error)
        # The provider is down, or answered something we cannot use: the job asks what it
        # says. A read does not: the close may have taken its 5 s already, and a query as
        # long would take GET /orders/{id} past the 10 s SCF gives it, answering nothing.
        if via == "job":
            _query_and_apply(order, counts, via=via)
        return
    PAYMENT_PROVIDER_CALLS.labels(channel, "close", "ok").inc()
    if _mark_closed(order):
        counts.closed += 1


def _mark_closed(order: Any) -> bool:
    now = utcnow()
    with transaction() as tx:
        if _lock_pending(tx, order["id"]) is None:
            return False
        tx.execute(
            update(orders)
            .where(orders.c.id == order["id"])
            .values(status="closed", closed_at=now, updated_at=now)
        )
        channel = order["channel"]
        tx.after_commit(lambda: ORDERS.labels(channel, "closed").inc(), order_id=order["id"])
    return True


def _reload(order_id: str) -> Any:
    with transaction() as tx:
        return tx.execute(select(orders).where(orders.c.id == order_id)).mappings().first()


def _provider_failed(order: Any, call: str, error: ProviderError) -> None:
    PAYMENT_PROVIDER_CALLS.labels(order["channel"], call, "error").inc()
    # An answer the provider signed but we cannot take does not pass with time, as an
    # outage does: the trade may be paid, and someone has to look.
    level = logging.ERROR if isinstance(error, UnusableAnswer) else logging.WARNING
    _log(level, f"payment provider {call} failed", order, error=str(error))


def _discrepancy(order: Any, via: str, reason: str) -> None:
    _log(logging.ERROR, "provider's report does not match the order", order, via=via, reason=reason)


def _log(level: int, message: str, order: Any, **fields: Any) -> None:
    applog.log_fields(log, level, message, order_id=order["id"], channel=order["channel"], **fields)
