"""The port a payment provider's adapter implements, and what crosses it.

An adapter speaks one provider's protocol through that provider's SDK: it creates a
payable code for a charge, queries and closes a trade, and turns a notification into a
`Report` only after checking everything the provider's rules ask of the message itself
(the signature over the raw body with the configured platform key, WeChat Pay's
5-minute timestamp window, the decryption, our merchant and app id). What depends on the
stored order (it exists, the amount matches) is checked by `app.payments.notifications`.

Every adapter raises only `Rejected` (a notification that must change nothing) and
`ProviderError` (the provider could not be reached or answered something unusable); an
SDK's own exceptions never leave the adapter, nor does any key, signature or decrypted
resource appear in an exception's text. A message the provider did sign but that carries
a value we cannot take is `Unusable` (a notification) or `UnusableAnswer` (an answer):
refused alike, and logged at ERROR, since the provider may have taken money that no order
will show until someone looks.

The payable code `create` answers is one `orders.code` can hold (`PAYABLE_CODE`), or the
adapter answers `ProviderError`. What a report carries is what an order can record and
take, or the adapter refuses the message: a trade id of `TRADE_ID`'s shape, an
out_trade_no of the provider's shape, an ISO 4217 currency, a payment time that is a time
in UTC. So nothing a provider sends fails at the database, nor is repeated whole in a log
line or an answer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Protocol

Channel = Literal["wechat", "alipay"]
CHANNELS: tuple[Channel, ...] = ("wechat", "alipay")

# What the provider says of a trade: `paid` (WeChat SUCCESS, Alipay TRADE_SUCCESS or
# TRADE_FINISHED), `unpaid` (not paid yet: NOTPAY, USERPAYING, WAIT_BUYER_PAY, or a trade
# the provider does not know yet), `closed` (it will never be paid: CLOSED, REVOKED,
# PAYERROR, TRADE_CLOSED), `refunded` (paid, then refunded: REFUND).
TradeState = Literal["paid", "unpaid", "closed", "refunded"]

# The payable code as `orders.code` (String(512)) holds it: both providers' are short
# ASCII URLs (`weixin://wxpay/bizpayurl?pr=...`, `https://qr.alipay.com/...`).
PAYABLE_CODE_MAX_CHARS = 512
PAYABLE_CODE = re.compile(rf"[!-~]{{1,{PAYABLE_CODE_MAX_CHARS}}}")

# The provider's trade id as `orders.provider_trade_id` (String(64)) records it. WeChat Pay
# documents transaction_id as string[1,32] and Alipay trade_no as string(64), both digits:
# one longer than the column, or not printable ASCII, is not one they send. The column is
# the bound, not WeChat Pay's 32: a longer id it can hold is no reason to refuse a payment.
TRADE_ID_MAX_CHARS = 64
TRADE_ID = re.compile(rf"[!-~]{{1,{TRADE_ID_MAX_CHARS}}}")


@dataclass(frozen=True)
class Charge:
    """What an order asks the provider for: `order_id` is the provider's out_trade_no."""

    order_id: str
    amount_fen: int
    description: str
    expires_at: datetime  # aware, UTC; the provider's time_expire / timeout_express


# A refund's outcome as WeChat Pay's refund_status names it: the money went back (SUCCESS),
# did not reach the payer's account (ABNORMAL), or the refund was closed unmade (CLOSED).
# Alipay notifies only refunds made: SUCCESS.
RefundStatus = Literal["SUCCESS", "ABNORMAL", "CLOSED"]


@dataclass(frozen=True)
class Refund:
    """A refund a notification reports. Nothing here refunds: someone did at the provider's
    console, and the order keeps what it gave (a product decision), so it is only told."""

    status: RefundStatus
    # What went back: WeChat Pay's amount.refund (this refund), Alipay's refund_fee (every
    # refund of the trade so far); None when unreadable, which refuses nothing.
    amount_fen: int | None


@dataclass(frozen=True)
class Report:
    """A trade as the provider reports it, in a verified notification or a query answer."""

    order_id: str  # out_trade_no
    state: TradeState
    amount_fen: int | None  # what was (or is to be) paid; None when the provider omits it
    currency: str  # "CNY"
    provider_trade_id: str | None  # transaction_id / trade_no
    paid_at: datetime | None  # aware, UTC, when state is "paid" and the provider says
    refund: Refund | None = None  # a notification of a refund: what it reports


class Rejected(Exception):
    """A notification that is not genuine or not ours: it changes nothing.

    `status` is what WeChat Pay is answered (401 for a signature that does not verify, 400
    for anything else); Alipay is always answered `fail`. The message is for the log line
    and never holds a key, a signature or the decrypted resource."""

    def __init__(self, reason: str, status: Literal[400, 401] = 400) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


class Unusable(Rejected):
    """A notification proven the provider's (its signature verified) that carries a value
    we cannot take (a trade id an order cannot record, a time that is no time): rejected
    like any other, logged at ERROR."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason, 400)


class ProviderError(Exception):
    """The provider could not be reached, or answered with an error or something we
    cannot use. The message names what failed (an error code, a status), never a key."""


class UnusableAnswer(ProviderError):
    """An answer the provider signed that carries a value we cannot take, as `Unusable`
    for a notification: logged at ERROR."""


class NotClosed(ProviderError):
    """A close the provider refused because the trade was paid (or otherwise moved on),
    with the trade as the provider reported it when the adapter had to ask: the caller
    applies that report rather than asking again. When the adapter's question failed,
    `query_error` says how: the caller has had its question for this turn all the same (a
    turn's time holds a close and one query)."""

    def __init__(
        self,
        message: str,
        report: Report | None = None,
        query_error: ProviderError | None = None,
    ) -> None:
        super().__init__(message)
        self.report = report
        self.query_error = query_error


class Gateway(Protocol):
    """One provider. Built from the settings by `app.payments.providers.gateway(channel)`."""

    channel: Channel
    timeout_s: float  # the longest one call takes, its answer read whole

    def create(self, charge: Charge) -> str:
        """The payable code: WeChat Native's `code_url`, Alipay precreate's `qr_code`."""
        ...

    def query(self, order_id: str) -> Report:
        """The trade's state at the provider (query by out_trade_no). A trade the provider
        does not know is `unpaid`."""
        ...

    def close(self, order_id: str) -> Report | None:
        """Close the trade so it can no longer be paid. Closing a trade the provider does not
        know, or one already closed, succeeds: the provider's report of the closed trade when
        the adapter had to query to tell (Alipay; a trade refunded in full shows there as
        closed), for the caller to keep its id, else None. A trade that was paid meanwhile
        raises `NotClosed` (with the provider's report when the adapter had to query to
        tell); the caller pays the order."""
        ...

    def verify(self, headers: dict[str, str], body: bytes) -> Report:
        """The notification's report, once it is proven genuine and ours. `headers` have
        lower-case names; `body` is the raw request body (JSON for WeChat Pay, a form for
        Alipay). Raises `Rejected`."""
        ...
