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

A run is bounded: it takes orders for RUN_BUDGET_S at most (less when the invocation it runs
in ends sooner, its timer's or an admin's: `app.clock.run_budget_s`), JOB_WORKERS at once,
least recently asked first, so a backlog (a provider outage, a burst of abandoned codes) is
worked through over several runs instead of one run being killed mid-way and the next
starting again on the same oldest orders. Two runs at once (the timer's and an admin's, or
a run outliving its minute) need no lock: each order is claimed as it is taken, so they
share the orders out.
"""

from __future__ import annotations

import contextvars
import logging
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import or_, select, update

from app.clock import run_budget_s, utcnow
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
# The most one order's turn takes once taken: a close and then a query, each within its
# provider's 5 s timeout, and a few short transactions.
ORDER_MAX_S = 12.0
# What an invocation keeps after its last turn ends: the report, its log line, the push.
REPORT_SPARE_S = 3.0
# A run takes no order after this: the timer fires every minute, and the last turn ends
# (60 - ORDER_MAX_S - REPORT_SPARE_S) before the next run starts and within the function's
# 60 s. An admin's run is held to the same, whatever admin-jobs-run's own timeout.
RUN_BUDGET_S = 45.0
# Orders asked at once. Both SDK clients keep no state between calls, so the workers share
# one adapter: wechatpayv3 signs with a parsed key and sends with requests' module functions
# (a session per call; no certificate download in public-key mode), python-alipay-sdk makes
# a signer per call and sends with urlopen. Few: provider calls are what is slow, and an
# instance holds DB_POOL_MAX (2) connections for the turns' short transactions.
JOB_WORKERS = 4


@dataclass
class Counts:
    checked: int = 0  # provider queries made
    paid: int = 0
    closed: int = 0

    def add(self, other: Counts) -> None:
        self.checked += other.checked
        self.paid += other.paid
        self.closed += other.closed


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


def run(budget_s: float | None = None) -> dict[str, int]:
    """The job: settle what the provider says was paid, close what expired. Due orders are
    taken least recently asked first (never asked, then asked longest ago; oldest first
    among equals), JOB_WORKERS at once, each claimed as it is taken; none is asked twice in
    one run. Once `budget_s` has passed no order is taken; those under way end within
    ORDER_MAX_S. So a backlog larger than one run is worked through in turns: what one run
    did not reach comes first in the next, and a slow order holds one worker, not the rest.
    Without a `budget_s`, RUN_BUDGET_S, or less when the invocation it runs in (its timer's,
    an admin's) ends sooner (a function timeout below 60 s), so that the last order taken
    ends, and the run reports, before the platform ends the invocation."""
    if budget_s is None:
        budget_s = run_budget_s(RUN_BUDGET_S, ORDER_MAX_S + REPORT_SPARE_S)
    counts = Counts()
    started = utcnow()
    stop_at = time.monotonic() + budget_s
    taken = 0
    out_of_time = budget_s <= 0
    running: set[Future[Counts]] = set()
    pool = ThreadPoolExecutor(JOB_WORKERS, thread_name_prefix="order-reconcile")
    try:
        while not out_of_time:
            now = utcnow()
            due = _due(now, started)
            if not due:
                break
            for order in due:
                _settle(running, counts, at_most=JOB_WORKERS - 1)  # a worker free
                if time.monotonic() >= stop_at:
                    out_of_time = True
                    break
                # Here, not in the worker: a claim that fails fails for every order (the
                # database) and ends the run, and the next batch must not choose it again.
                if not _claim(order["id"]):
                    continue
                taken += 1
                # A copy of this context each: the run's tally and log fields follow the turn.
                turn = contextvars.copy_context()
                running.add(pool.submit(turn.run, _turn, order, now))
        _settle(running, counts, at_most=0)
    finally:
        # After a failed claim, the turns under way still end (within ORDER_MAX_S).
        pool.shutdown(wait=True)
    if out_of_time:
        applog.log_fields(
            log,
            logging.INFO,
            "order-reconcile stopped at its budget",
            budget_s=round(budget_s, 3),
            taken=taken,
        )
    return {"checked": counts.checked, "paid": counts.paid, "closed": counts.closed}


def run_timer(_event: Any = None) -> dict[str, int]:
    """The timer function's job, bounded by its invocation as `run` is; the timer wrapper
    logs and counts the run."""
    return run()


def _due(now: datetime, started: datetime) -> list[Any]:
    """The next JOB_BATCH due orders, least recently asked first: not asked in this run
    (since `started`), nor by anyone in the last RECHECK_S. NULLs sort first in ascending
    order on both MariaDB and SQLite: the orders never asked come first."""
    asked_before = min(now - timedelta(seconds=RECHECK_S), started)
    with transaction() as tx:
        return list(
            tx.execute(
                select(orders)
                .where(
                    orders.c.status == "pending",
                    or_(
                        orders.c.created_at <= now - timedelta(seconds=JOB_MIN_AGE_S),
                        orders.c.expires_at <= now,
                    ),
                    or_(orders.c.checked_at.is_(None), orders.c.checked_at < asked_before),
                )
                .order_by(orders.c.checked_at, orders.c.created_at, orders.c.id)
                .limit(JOB_BATCH)
            ).mappings()
        )


def _turn(order: Any, now: datetime) -> Counts:
    """One claimed order's turn in a worker, counted on its own (the run adds them up)."""
    counts = Counts()
    _reconcile(order, counts, now, via="job")
    return counts


def _settle(running: set[Future[Counts]], counts: Counts, *, at_most: int) -> None:
    """Wait until no more than `at_most` turns are under way, adding up those that ended."""
    while len(running) > at_most:
        done, _ = wait(running, return_when=FIRST_COMPLETED)
        for future in done:
            running.discard(future)
            counts.add(future.result())


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
    elif report.state in ("closed", "refunded") and _mark_closed(order, report.provider_trade_id):
        # The provider will never take this payment: the order can no longer be paid.
        counts.closed += 1
        if report.state == "refunded":
            # Paid and refunded before it was settled here: only a refund made at the
            # provider's console does that, and one of part of the payment left the user
            # charged for what was not delivered. The provider says how much went back.
            _log(logging.ERROR, "order closed on its trade's refund", order, via=via)


def _close(order: Any, counts: Counts, *, via: str) -> None:
    channel: Channel = order["channel"]
    try:
        closed = providers.gateway(channel).close(order["id"])
    except NotClosed as refused:
        # Paid at the last moment: pay the order, with what the adapter already asked when
        # it did (one question per order per claim).
        PAYMENT_PROVIDER_CALLS.labels(channel, "close", "ok").inc()
        if refused.query_error is not None:
            # Its question failed: asked again by the next run, not in this turn, whose
            # time (ORDER_MAX_S) holds the close and one query.
            _provider_failed(order, "query", refused.query_error)
        elif refused.report is None:
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
    if closed is not None:
        # The adapter asked to tell (`Gateway.close`): a query, as the refused close's is.
        counts.checked += 1
    # A trade the provider had closed already (an Alipay trade refunded in full) keeps its id.
    if _mark_closed(order, None if closed is None else closed.provider_trade_id):
        counts.closed += 1


def _mark_closed(order: Any, trade_id: str | None = None) -> bool:
    """Close the pending order. `trade_id` is the trade the provider reported closed or
    refunded (one it had made, and for a refund, taken the money for): recorded, so that a
    late report of that trade's payment does not pay the order (app.payments.settlement)."""
    now = utcnow()
    with transaction() as tx:
        if _lock_pending(tx, order["id"]) is None:
            return False
        tx.execute(
            update(orders)
            .where(orders.c.id == order["id"])
            .values(status="closed", closed_at=now, provider_trade_id=trade_id, updated_at=now)
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
