"""The Alipay adapter (open platform, RSA2) on python-alipay-sdk: `alipay.trade.precreate`
for the QR code, `.query` and `.close` by out_trade_no, and the asynchronous notification
proven genuine (RSA2 over the form with Alipay's public key) and ours (app_id, and seller_id
when ALIPAY_SELLER_ID names our PID).

Money crosses as integer fen and is written as yuan with exactly two decimals, through
Decimal only. Alipay's times are Beijing time (UTC+8) without a zone; reports carry aware
UTC. The SDK is imported here and nowhere else in `app`; none of its exceptions, and no key
or sign, leaves this module: failures are `ProviderError` naming the API and Alipay's code,
a notification that is not genuine or not ours is `Rejected`; one Alipay signed that we
cannot read or record is `Unusable` (an answer: `UnusableAnswer`).
"""

from __future__ import annotations

import re
import urllib.error
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl

import alipay

from app.config import Settings
from app.payments.gateway import (
    PAYABLE_CODE,
    PAYABLE_CODE_MAX_CHARS,
    TRADE_ID,
    TRADE_ID_MAX_CHARS,
    Channel,
    Charge,
    NotClosed,
    ProviderError,
    Refund,
    Rejected,
    Report,
    TradeState,
    Unusable,
    UnusableAnswer,
)

TIMEOUT_S = 5.0
BEIJING = timezone(timedelta(hours=8))
ALIPAY_TIME = "%Y-%m-%d %H:%M:%S"
SUCCESS = "10000"
TRADE_NOT_EXIST = "ACQ.TRADE_NOT_EXIST"
TRADE_STATUS_ERROR = "ACQ.TRADE_STATUS_ERROR"
STATES: dict[str, TradeState] = {
    "TRADE_SUCCESS": "paid",
    "TRADE_FINISHED": "paid",
    "WAIT_BUYER_PAY": "unpaid",
    "TRADE_CLOSED": "closed",
}
# Yuan as Alipay writes amounts: digits, at most two decimals, nothing else (no sign,
# exponent, NaN or spaces, all of which Decimal would take).
YUAN = re.compile(r"(0|[1-9]\d{0,11})(\.\d{1,2})?")
# Alipay's out_trade_no is string(64) (ours are 32 hex digits): one longer, or not printable
# ASCII, is not one Alipay takes, and is never written whole into a log line.
OUT_TRADE_NO = re.compile(r"[!-~]{1,64}")
UNRECORDABLE_TRADE_NO = (
    f"a trade_no an order cannot record (not 1-{TRADE_ID_MAX_CHARS} printable ASCII characters)"
)
# Provider text that may go into an exception message: short codes only.
CODE = re.compile(r"[A-Za-z0-9._-]{1,64}")
# A trade's subject: String(256), without "special characters, such as /, = and &".
SUBJECT_REFUSED = re.compile(r"[/=&]")
SUBJECT_MAX_CHARS = 256


@dataclass(frozen=True)
class AlipayApp:
    """Our app at Alipay: what the adapter is built from. `repr` leaves the keys out."""

    app_id: str
    private_key: str = field(repr=False)  # the app's, PEM (PKCS#1 or PKCS#8)
    alipay_public_key: str = field(repr=False)  # PEM
    gateway: str = ""  # the full gateway URL
    notify_url: str = ""
    seller_id: str = ""  # the merchant's PID; empty: a trade's seller is not checked


def from_settings(settings: Settings, *, timeout_s: float = TIMEOUT_S) -> Alipay:
    """The adapter for the ALIPAY_* settings. ProviderError naming the variables that are
    unset, or the key that does not load (never its text)."""
    app = AlipayApp(
        app_id=settings.alipay_appid,
        private_key=settings.alipay_private_key.get_secret_value(),
        alipay_public_key=settings.alipay_public_key.get_secret_value(),
        gateway=settings.alipay_gateway,
        notify_url=settings.alipay_notify_url,
        seller_id=settings.alipay_seller_id,
    )
    return Alipay(app, timeout_s=timeout_s)


class Alipay:
    """The `Gateway` for Alipay. One SDK client per adapter, built once: it holds the
    parsed keys and nothing that changes per call, so threads may share it."""

    channel: Channel = "alipay"

    def __init__(self, app: AlipayApp, *, timeout_s: float = TIMEOUT_S) -> None:
        missing = [
            variable
            for variable, value in (
                ("ALIPAY_APPID", app.app_id),
                ("ALIPAY_PRIVATE_KEY", app.private_key),
                ("ALIPAY_PUBLIC_KEY", app.alipay_public_key),
                ("ALIPAY_GATEWAY", app.gateway),
            )
            if not value
        ]
        if missing:
            raise ProviderError("Alipay is not configured: " + ", ".join(missing) + " unset")
        self.app_id = app.app_id
        self.seller_id = app.seller_id
        self.gateway = app.gateway
        self.timeout_s = timeout_s
        self._notify_url = app.notify_url
        try:
            # With alipay_public_key_string the SDK verifies every answer's sign itself
            # (AliPayValidationError otherwise); AliPayConfig's timeout goes to urlopen.
            self._client = alipay.AliPay(
                appid=app.app_id,
                app_notify_url=None,
                app_private_key_string=app.private_key,
                alipay_public_key_string=app.alipay_public_key,
                sign_type="RSA2",
                config=alipay.AliPayConfig(timeout=timeout_s),
            )
        except (ValueError, IndexError, TypeError):
            raise ProviderError(
                "ALIPAY_PRIVATE_KEY or ALIPAY_PUBLIC_KEY is not an RSA key in PEM form"
            ) from None
        if not self._client.app_private_key.has_private():
            raise ProviderError("ALIPAY_PRIVATE_KEY holds a public key, not the app's private key")
        if self._client._gateway != app.gateway:
            # The SDK takes no gateway URL (only debug=True for Alipay's sandbox host), so
            # another gateway (a simulator, the sandbox) goes into its private attribute,
            # here and nowhere else.
            self._client._gateway = app.gateway

    def __repr__(self) -> str:
        return f"Alipay(app_id={self.app_id!r}, gateway={self.gateway!r})"

    # ------------------------------------------------------------ the port

    def create(self, charge: Charge) -> str:
        biz = {
            "out_trade_no": charge.order_id,
            "total_amount": yuan(charge.amount_fen),
            "subject": _subject(charge.description, charge.order_id),
            "time_expire": alipay_time(charge.expires_at),
        }
        api = "alipay.trade.precreate"
        answer = self._call(api, biz, notify_url=self._notify_url)
        if answer.get("code") != SUCCESS:
            raise ProviderError(f"{api} refused: {_codes(answer)}")
        qr_code = answer.get("qr_code")
        if not isinstance(qr_code, str) or not qr_code:
            raise ProviderError(f"{api} answered without a qr_code")
        if not PAYABLE_CODE.fullmatch(qr_code):
            raise UnusableAnswer(
                f"{api} answered a qr_code an order cannot hold (not 1-{PAYABLE_CODE_MAX_CHARS} "
                "printable ASCII characters)"
            )
        if answer.get("out_trade_no", charge.order_id) != charge.order_id:
            raise ProviderError(f"{api} answered for another out_trade_no")
        return qr_code

    def query(self, order_id: str) -> Report:
        api = "alipay.trade.query"
        answer = self._call(api, {"out_trade_no": order_id})
        if answer.get("code") != SUCCESS:
            # A precreated trade is unknown to Alipay until the buyer scans its code.
            if answer.get("sub_code") == TRADE_NOT_EXIST:
                return Report(order_id, "unpaid", None, "CNY", None, None)
            raise ProviderError(f"{api} refused: {_codes(answer)}")
        if answer.get("out_trade_no", order_id) != order_id:
            raise UnusableAnswer(f"{api} answered for another out_trade_no")
        # alipay.trade.query documents no seller_id in its answer, and asks of a trade by our
        # app_id: an answer without one is taken, one naming another seller is not ours.
        seller_id = answer.get("seller_id")
        if self.seller_id and seller_id is not None and seller_id != self.seller_id:
            raise ProviderError(f"{api} answered a seller_id that is not ALIPAY_SELLER_ID")
        status = answer.get("trade_status")
        state = STATES.get(status) if isinstance(status, str) else None
        if state is None:
            raise UnusableAnswer(f"{api} answered an unknown trade_status {_code(status)}")
        amount = fen(answer.get("total_amount"))
        if amount is None:
            raise UnusableAnswer(f"{api} answered an unreadable total_amount")
        trade_no = answer.get("trade_no")
        trade_no = trade_no if isinstance(trade_no, str) and trade_no else None
        if trade_no is not None and not TRADE_ID.fullmatch(trade_no):
            raise UnusableAnswer(f"{api} answered {UNRECORDABLE_TRADE_NO}")
        return Report(
            order_id=order_id,
            state=state,
            amount_fen=amount,
            currency="CNY",
            provider_trade_id=trade_no,
            paid_at=beijing_time(answer.get("send_pay_date")) if state == "paid" else None,
        )

    def close(self, order_id: str) -> Report | None:
        api = "alipay.trade.close"
        answer = self._call(api, {"out_trade_no": order_id})
        if answer.get("code") == SUCCESS:
            return None
        sub_code = answer.get("sub_code")
        if sub_code == TRADE_NOT_EXIST:
            return None  # never scanned: no trade to close, and none to pay after expiry
        if sub_code == TRADE_STATUS_ERROR:
            # Alipay closes only a trade waiting for payment: this one is closed already
            # (done: its report, whose trade id the caller keeps, for a trade refunded in full
            # is closed too) or paid (the caller pays the order).
            try:
                report = self.query(order_id)
            except ProviderError as error:
                refused = f"{api} refused: {TRADE_STATUS_ERROR}, and the trade's query failed"
                raise NotClosed(refused, query_error=error) from error
            if report.state == "closed":
                return report
            raise NotClosed(
                f"{api} refused: {TRADE_STATUS_ERROR} (the trade is {report.state})", report
            )
        raise ProviderError(f"{api} refused: {_codes(answer)}")

    def verify(self, headers: dict[str, str], body: bytes) -> Report:
        fields = _form(body)
        sign = fields.get("sign")
        if not sign:
            raise Rejected("the notification has no sign", 401)
        # The SDK pops sign_type from what it is given and reads every other field: a copy,
        # without sign, as Alipay signs notifications.
        unsigned = {k: v for k, v in fields.items() if k != "sign"}
        try:
            genuine = self._client.verify(unsigned, sign)
        except (alipay.AliPayException, ValueError, TypeError):
            genuine = False  # an unknown sign_type, a sign that is not base64
        if not genuine:
            raise Rejected("the notification's sign does not verify with Alipay's key", 401)
        if fields.get("app_id") != self.app_id:
            raise Rejected("the notification is for another app_id")
        # Alipay's guide asks for the seller too: the app may take payments for other sellers
        # (a service provider's app does), and a trade of theirs is not one of our orders.
        if self.seller_id and fields.get("seller_id") != self.seller_id:
            raise Rejected("the notification's seller_id is not ALIPAY_SELLER_ID")
        order_id = fields.get("out_trade_no")
        if not order_id:
            raise Unusable("the notification has no out_trade_no")
        if not OUT_TRADE_NO.fullmatch(order_id):
            raise Unusable("the notification's out_trade_no is not 1-64 printable ASCII characters")
        state = STATES.get(fields.get("trade_status", ""))
        if state is None:
            raise Unusable("the notification has an unknown trade_status")
        amount = fen(fields.get("total_amount"))
        if amount is None:
            raise Unusable("the notification's total_amount is not an amount")
        trade_no = fields.get("trade_no") or None
        if trade_no is not None and not TRADE_ID.fullmatch(trade_no):
            raise Unusable(f"the notification has {UNRECORDABLE_TRADE_NO}")
        # A refund made at the console is notified to the payment's notify_url: the trade
        # TRADE_CLOSED (in full) or still TRADE_SUCCESS (in part), with the refund's fields,
        # which a trade closed unpaid or a payment does not carry (a refund_fee of 0.00 is
        # taken as none: nothing went back).
        refund = None
        refund_fee = fields.get("refund_fee")
        refunded = fen(refund_fee)
        if fields.get("gmt_refund") or (refund_fee and refunded != 0):
            refund = Refund("SUCCESS", refunded)
        return Report(
            order_id=order_id,
            state=state,
            amount_fen=amount,
            currency="CNY",
            provider_trade_id=trade_no,
            paid_at=beijing_time(fields.get("gmt_payment")) if state == "paid" else None,
            refund=refund,
        )

    # ------------------------------------------------------------ the SDK call

    def _call(self, api: str, biz: dict[str, str], **params: str) -> dict[str, Any]:
        """The verified response object of one API call, ended by `timeout_s` in all (less
        when the invocation ends sooner: `app.payments.bounded`), not only per socket read.
        `server_api` is the SDK's public call; it is given the timestamp because the SDK
        writes the machine's local time, and SCF's clock is UTC where Alipay reads Beijing
        time (and refuses a timestamp 15 minutes off)."""
        from app.payments import bounded  # cold start: urllib3 and the deadline, only on a call

        timestamp = datetime.now(BEIJING).strftime(ALIPAY_TIME)
        try:
            answer = bounded.call(
                lambda: self._client.server_api(api, biz, timestamp=timestamp, **params),
                self.timeout_s,
            )
        except bounded.OutOfTime as late:
            raise ProviderError(f"{api}: {late}") from None
        except urllib.error.HTTPError as error:
            raise ProviderError(f"{api}: Alipay answered HTTP {error.code}") from None
        except urllib.error.URLError as error:
            raise ProviderError(f"{api}: Alipay unreachable ({_reason(error.reason)})") from None
        except TimeoutError:
            raise ProviderError(f"{api}: no answer within {self.timeout_s:g} s") from None
        except OSError as error:
            raise ProviderError(f"{api}: Alipay unreachable ({type(error).__name__})") from None
        except alipay.AliPayValidationError:
            raise ProviderError(f"{api}: the answer's sign does not verify") from None
        except alipay.AliPayException as error:
            # An error answer Alipay did not sign; the SDK keeps the code only in a private
            # attribute, and its message is the whole answer.
            code = getattr(error, "_AliPayException__code", None)
            raise ProviderError(f"{api}: Alipay answered unsigned error {_code(code)}") from None
        except Exception as error:  # noqa: BLE001 - the SDK fails on odd answers in many ways
            raise ProviderError(f"{api}: unreadable answer ({type(error).__name__})") from None
        if not isinstance(answer, dict):
            raise ProviderError(f"{api}: unreadable answer (not an object)")
        return answer


def yuan(amount_fen: int) -> str:
    """Fen as Alipay's yuan string: 1 -> "0.01", 1990 -> "19.90"."""
    return str((Decimal(amount_fen) / 100).quantize(Decimal("0.01")))


def fen(text: object) -> int | None:
    """Alipay's yuan string as fen, exactly; None when it is not one."""
    if not isinstance(text, str) or not YUAN.fullmatch(text):
        return None
    return int(Decimal(text) * 100)


def alipay_time(moment: datetime) -> str:
    """An aware time as Alipay writes times: Beijing time, no zone."""
    return moment.astimezone(BEIJING).strftime(ALIPAY_TIME)


def beijing_time(text: object) -> datetime | None:
    """Alipay's time as aware UTC. None when absent or unreadable: it dates a payment that
    the rest of the message proves, so it never refuses one."""
    if not isinstance(text, str):
        return None
    try:
        moment = datetime.strptime(text, ALIPAY_TIME)
    except ValueError:
        return None
    try:
        return moment.replace(tzinfo=BEIJING).astimezone(timezone.utc)
    except OverflowError:  # 0001-01-01 00:00:00: in UTC it falls before year 1
        return None


def _form(body: bytes) -> dict[str, str]:
    """The notification's fields. A body that is not a UTF-8 form, or that names a field
    twice (which value was signed?), is Rejected."""
    if not body:  # no fields (Python 3.10's strict parsing refuses an empty query)
        return {}
    try:
        pairs = parse_qsl(
            body.decode("utf-8"), keep_blank_values=True, strict_parsing=True, errors="strict"
        )
    except (UnicodeDecodeError, ValueError):
        raise Rejected("the notification is not a UTF-8 form") from None
    fields = dict(pairs)
    if len(fields) != len(pairs):
        raise Rejected("the notification names a field twice")
    return fields


def _codes(answer: dict[str, Any]) -> str:
    code = _code(answer.get("code"))
    sub_code = answer.get("sub_code")
    return f"{code} {_code(sub_code)}" if sub_code is not None else code


def _code(value: object) -> str:
    text = str(value)
    return text if CODE.fullmatch(text) else "(unreadable)"


def _reason(reason: object) -> str:
    if isinstance(reason, TimeoutError):
        return "timed out"
    if isinstance(reason, OSError):
        return type(reason).__name__
    return _code(reason)


def _subject(text: str, order_id: str) -> str:
    """A trade's title from the plan's name: Alipay refuses a subject holding `/`, `=` or `&`
    (its "special characters"), which a plan's name may hold, so they become spaces; at most
    SUBJECT_MAX_CHARS; the order's id when nothing is left."""
    plain = " ".join(SUBJECT_REFUSED.sub(" ", text).split())[:SUBJECT_MAX_CHARS]
    return plain or order_id
