"""The providers' payment notifications: verified first, then applied once.

The adapter proves the message genuine and ours (signature over the raw body with the
configured platform key, WeChat Pay's timestamp window and decryption, merchant and app
id); then `app.payments.settlement` checks it against the order (it exists, belongs to
that channel, matches the amount and currency) and pays a paid report, once, in the same
transaction. Every other state is acknowledged and changes nothing. A rejection changes
nothing either.

One log line per notification: channel, order id (when known), outcome and, for a
rejection, the reason; never a key, a signature or the decrypted resource. It is at ERROR
for a genuine notification carrying a value we cannot take (`Unusable`), and for a genuine
report of a payment that is not its order's (another amount, currency or channel, or no such
order): the provider may have taken money that no order will show until someone looks.

A notification of a refund (made at the provider's console: nothing here refunds) is
checked against its order like any report and, when it is the order's, acknowledged and
changes nothing: a refund takes back no membership or quota. Its line is at WARNING with the
refund's status and amount, so that someone hears the money went back.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

from app.observability import logging as applog
from app.observability.metrics import PAYMENT_NOTIFICATIONS
from app.payments import providers, settlement
from app.payments.gateway import Channel, ProviderError, Refund, Rejected, Unusable

log = applog.get_logger("app.payments.notifications")

# accepted: this notification paid the order; repeat: it was paid already; ignored: a
# state other than paid; rejected: not genuine, not ours, or not this order's payment.
Outcome = Literal["accepted", "repeat", "ignored", "rejected"]


@dataclass(frozen=True)
class Receipt:
    outcome: Outcome
    # What WeChat Pay is answered: 200, or 400 (bad input) / 401 (bad signature).
    status: Literal[200, 400, 401]
    reason: str = ""
    # A genuine notification we could not take (`Unusable`, or a payment that is not its
    # order's): its line is at ERROR.
    unusable: bool = False
    # The refund a genuine notification reports: acknowledged, its line is at WARNING.
    refund: Refund | None = None

    @property
    def acknowledged(self) -> bool:
        return self.outcome != "rejected"


def receive(channel: Channel, headers: dict[str, str], body: bytes) -> Receipt:
    receipt, order_id = _receive(channel, headers, body)
    PAYMENT_NOTIFICATIONS.labels(channel, receipt.outcome).inc()
    fields: dict[str, object] = {
        "channel": channel,
        "order_id": order_id,
        "outcome": receipt.outcome,
    }
    if receipt.reason:
        fields["reason"] = receipt.reason
    level = logging.INFO
    if receipt.refund:
        level = logging.WARNING
        fields.update(refund_status=receipt.refund.status, refund_fen=receipt.refund.amount_fen)
    if receipt.outcome == "rejected":
        level = logging.ERROR if receipt.unusable else logging.WARNING
    applog.log_fields(log, level, "payment notification", **fields)
    return receipt


def _receive(channel: Channel, headers: dict[str, str], body: bytes) -> tuple[Receipt, str | None]:
    try:
        gateway = providers.gateway(channel)
    except ProviderError as error:
        return Receipt("rejected", 400, str(error)), None
    try:
        report = gateway.verify(headers, body)
    except Rejected as rejected:
        unusable = isinstance(rejected, Unusable)
        return Receipt("rejected", rejected.status, rejected.reason, unusable), None
    order_id = report.order_id
    settled = settlement.apply(order_id, channel, report, via="notification")
    refund = report.refund
    outcome = _ACKNOWLEDGED.get(settled.outcome)
    if outcome is not None:
        reason = _refunded(refund) if refund else settled.reason
        return Receipt(outcome, 200, reason, refund=refund), order_id
    # Proven the provider's: a payment refused here is money taken that no order shows.
    paid = report.state == "paid"
    return Receipt("rejected", 400, settled.reason, unusable=paid, refund=refund), order_id


_ACKNOWLEDGED: dict[str, Outcome] = {"paid": "accepted", "repeat": "repeat", "ignored": "ignored"}


def _refunded(refund: Refund) -> str:
    """What a refund's line says happened to the money."""
    if refund.status == "ABNORMAL":
        return "a refund made at the provider did not reach the payer's account (ABNORMAL)"
    if refund.status == "CLOSED":
        return "a refund made at the provider was closed: no money went back"
    money = "money" if refund.amount_fen is None else f"{refund.amount_fen} fen"
    return f"refunded at the provider: {money} went back to the payer; the order keeps what it gave"
