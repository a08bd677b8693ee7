"""WeChat Pay's refund notifications (REFUND.SUCCESS, .ABNORMAL, .CLOSED), for
`app.payments.wechatpay`.

A refund made at the merchant platform may name our notify URL as its notify_url; its
resource is a refund, not a transaction: the mchid, the out_trade_no, the transaction_id and
the amount (`total` the trade's, `refund` this refund's), a `refund_status`, and no appid.
The adapter checks what it shares with a transaction; this reads what is the refund's own.
Nothing here refunds, and a refund takes nothing back: it is reported, to be logged.
"""

from __future__ import annotations

from typing import Any

from app.payments.gateway import Refund, RefundStatus, Unusable

EVENTS = frozenset({"REFUND.SUCCESS", "REFUND.ABNORMAL", "REFUND.CLOSED"})
_STATUSES: dict[str, RefundStatus] = {
    "SUCCESS": "SUCCESS",
    "ABNORMAL": "ABNORMAL",
    "CLOSED": "CLOSED",
}


def refund(resource: dict[str, Any]) -> Refund:
    """The refund a decrypted refund resource reports; `Unusable` for a refund_status
    WeChat Pay does not send. An amount it does not state as whole fen is None: it names
    what went back, and refuses nothing."""
    # As text: a JSON list or object is no status, and cannot be looked up as itself.
    status = _STATUSES.get(str(resource.get("refund_status")))
    if status is None:
        raise Unusable("notification carries an unknown refund_status")
    amount = resource.get("amount")
    refunded = amount.get("refund") if isinstance(amount, dict) else None
    if not isinstance(refunded, int) or isinstance(refunded, bool) or refunded < 0:
        refunded = None
    return Refund(status, refunded)
