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
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

from app.observability import logging as applog
from app.observability.metrics import PAYMENT_NOTIFICATIONS
from app.payments import providers, settlement
from app.payments.gateway import Channel, ProviderError, Rejected, Unusable

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

    @property
    def acknowledged(self) -> bool:
        return self.outcome != "rejected"


def receive(channel: Channel, headers: dict[str, str], body: bytes) -> Receipt:
    receipt, order_id = _receive(channel, headers, body)
    PAYMENT_NOTIFICATIONS.labels(channel, receipt.outcome).inc()
    fields = {"channel": channel, "order_id": order_id, "outcome": receipt.outcome}
    if receipt.reason:
        fields["reason"] = receipt.reason
    level = logging.INFO
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
    if settled.outcome == "paid":
        return Receipt("accepted", 200), order_id
    if settled.outcome == "repeat":
        return Receipt("repeat", 200), order_id
    if settled.outcome == "ignored":
        return Receipt("ignored", 200, settled.reason), order_id
    # Proven the provider's: a payment refused here is money taken that no order shows.
    paid = report.state == "paid"
    return Receipt("rejected", 400, settled.reason, unusable=paid), order_id
