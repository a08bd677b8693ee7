"""WeChat Pay v3 behind the payments port: Native orders (`code_url`), query and close by
out_trade_no, and notifications, on the `wechatpayv3` SDK in platform public-key mode.

This module alone imports the SDK, and builds its client once per adapter (the constructor
parses the keys); the client keeps no state between calls, so one adapter serves every
thread. What the SDK leaves to its caller is done here: 5 seconds for every call in all,
its answer read whole (less when the invocation ends sooner: `app.payments.bounded`),
the notification's `Wechatpay-Serial` checked against our public_key_id before the SDK sees
it (for an unknown serial the SDK would download platform certificates), the 5-minute
window on `Wechatpay-Timestamp` (the SDK does not look at it), and our mchid and appid in
every transaction (our mchid in a refund's notification, which carries no appid). The SDK
gets no logger: all it would log (at debug) is request headers carrying our signature,
bodies and decrypted notifications.

JSON from outside (a notification's body, an API answer) is read through the project's JSON
policy (`app.json_values`: at most 16 deep, finite numbers), so a hostile nesting is refused
like any other body that is not WeChat Pay's, never a RecursionError.

Only `Rejected` and `ProviderError` (and their `Unusable` kinds, for a transaction WeChat
Pay signed that carries a value we cannot take) leave this module, with messages naming
what failed (an HTTP status, WeChat Pay's error code when it has the shape of one, the
variable that does not load) and never a key, a signature or a decrypted resource.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from wechatpayv3 import WeChatPay as _Sdk
from wechatpayv3 import WeChatPayType

from app import json_values
from app.clock import rfc3339
from app.config import Settings
from app.payments import wechatpay_refund
from app.payments.gateway import (
    PAYABLE_CODE,
    TRADE_ID,
    TRADE_ID_MAX_CHARS,
    Channel,
    Charge,
    NotClosed,
    ProviderError,
    Rejected,
    Report,
    TradeState,
    Unusable,
    UnusableAnswer,
)

TIMEOUT_S = 5
# WeChat Pay's notifications and answers are a few KiB; a request body is bounded at the HTTP
# edge (1 MiB, 413) already. What protects the parser is the policy's depth limit.
JSON_MAX_BYTES = 1024 * 1024
MAX_SKEW_S = 300  # WeChat Pay's rule: a notification more than 5 minutes off is a replay
DEFAULT_API_BASE = "https://api.mch.weixin.qq.com"
SIGNATURE_TYPE = "WECHATPAY2-SHA256-RSA2048"
CHINA = timezone(timedelta(hours=8))  # WeChat Pay reads and writes times in +08:00
# An order's `description` is string[1,127]; kept to 127 UTF-8 bytes, the stricter reading,
# so a plan name of up to 100 Chinese characters never makes its orders fail.
DESCRIPTION_MAX_BYTES = 127
# WeChat Pay's out_trade_no (string[6,32] of digits, letters and `_-|*`): it takes no other
# when an order is created, so a transaction naming another is not one it sends.
OUT_TRADE_NO = re.compile(r"[0-9A-Za-z_\-|*]{6,32}")
# An ISO 4217 code: WeChat Pay's currency ("CNY").
CURRENCY = re.compile(r"[A-Z]{3}")
# WeChat Pay's error codes (PARAM_ERROR, ORDER_NOT_EXIST): an answer's `code` goes into
# messages and log lines only in this shape, anything else as UNREADABLE_CODE.
ERROR_CODE = re.compile(r"[A-Z_]{1,64}")
UNREADABLE_CODE = "(unreadable)"
SIGNATURE_HEADERS = (
    "wechatpay-signature",
    "wechatpay-timestamp",
    "wechatpay-nonce",
    "wechatpay-serial",
)

_STATES: dict[str, TradeState] = {
    "SUCCESS": "paid",
    "NOTPAY": "unpaid",
    "USERPAYING": "unpaid",
    "CLOSED": "closed",
    "REVOKED": "closed",
    "PAYERROR": "closed",
    "REFUND": "refunded",
}


@dataclass(frozen=True)
class _Answer:
    """One API answer: its status, its JSON body (None when empty or not JSON) and, for an
    error, WeChat Pay's code."""

    status: int
    data: Any
    code: str | None


class _NotOurs(Exception):
    """A transaction of another merchant or app: the reason, for a message."""


class _Unusable(Exception):
    """A transaction of ours carrying a value that is not what WeChat Pay sends, or that an
    order cannot record: the reason, for a message."""


def from_settings(settings: Settings, *, clock: Callable[[], float] = time.time) -> WechatPay:
    """The adapter for the WECHATPAY_* settings; ProviderError naming the variables that are
    missing or do not load. `clock` is what `verify` takes the time from."""
    required = {
        "WECHATPAY_MCHID": settings.wechatpay_mchid,
        "WECHATPAY_APPID": settings.wechatpay_appid,
        "WECHATPAY_PRIVATE_KEY": settings.wechatpay_private_key.get_secret_value(),
        "WECHATPAY_CERT_SERIAL": settings.wechatpay_cert_serial,
        "WECHATPAY_APIV3_KEY": settings.wechatpay_apiv3_key.get_secret_value(),
        "WECHATPAY_PUBLIC_KEY": settings.wechatpay_public_key.get_secret_value(),
        "WECHATPAY_PUBLIC_KEY_ID": settings.wechatpay_public_key_id,
        "WECHATPAY_NOTIFY_URL": settings.wechatpay_notify_url,
    }
    missing = [name for name, value in required.items() if not value.strip()]
    if missing:
        raise ProviderError(f"WeChat Pay is not configured: {', '.join(missing)} unset")
    apiv3_key = required["WECHATPAY_APIV3_KEY"]
    if len(apiv3_key.encode()) != 32:
        raise ProviderError("WeChat Pay is not configured: WECHATPAY_APIV3_KEY is not 32 bytes")
    private_key = _pkcs8(required["WECHATPAY_PRIVATE_KEY"])
    try:
        sdk = _Sdk(
            wechatpay_type=WeChatPayType.NATIVE,
            mchid=settings.wechatpay_mchid,
            private_key=private_key,
            cert_serial_no=settings.wechatpay_cert_serial,
            appid=settings.wechatpay_appid,
            apiv3_key=apiv3_key,
            notify_url=settings.wechatpay_notify_url,
            timeout=TIMEOUT_S,
            public_key=required["WECHATPAY_PUBLIC_KEY"],
            public_key_id=settings.wechatpay_public_key_id,
        )
    except Exception:  # noqa: BLE001 - the SDK raises bare Exception for a key that does not load
        raise ProviderError(
            "WeChat Pay is not configured: WECHATPAY_PUBLIC_KEY does not load"
        ) from None
    api_base = settings.wechatpay_api_base.strip().rstrip("/") or DEFAULT_API_BASE
    if api_base != DEFAULT_API_BASE:
        # The SDK has no public base-URL parameter: its Core keeps the gateway in this
        # private attribute, read on every request.
        sdk._core._gate_way = api_base
    return WechatPay(
        sdk,
        mchid=settings.wechatpay_mchid,
        appid=settings.wechatpay_appid,
        public_key_id=settings.wechatpay_public_key_id,
        api_base=api_base,
        clock=clock,
    )


def _pkcs8(pem: str) -> str:
    """The merchant key as PKCS#8 PEM, which is all the SDK loads; the variable may hold
    PKCS#1 (`BEGIN RSA PRIVATE KEY`) as well."""
    try:
        key = serialization.load_pem_private_key(pem.strip().encode(), password=None)
    except (ValueError, TypeError):
        raise ProviderError(
            "WeChat Pay is not configured: WECHATPAY_PRIVATE_KEY is not an unencrypted PEM key"
        ) from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ProviderError("WeChat Pay is not configured: WECHATPAY_PRIVATE_KEY is not an RSA key")
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


class WechatPay:
    """The `Gateway` of channel "wechat"."""

    channel: Channel = "wechat"
    timeout_s: float = TIMEOUT_S

    def __init__(
        self,
        sdk: Any,
        *,
        mchid: str,
        appid: str,
        public_key_id: str,
        api_base: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._sdk = sdk
        self.mchid = mchid
        self.appid = appid
        self.public_key_id = public_key_id
        self.api_base = api_base
        self._clock = clock

    def __repr__(self) -> str:
        return f"WechatPay(mchid={self.mchid!r}, appid={self.appid!r}, api_base={self.api_base!r})"

    # ------------------------------------------------------------ API calls

    def create(self, charge: Charge) -> str:
        expires_at = charge.expires_at
        if expires_at.tzinfo is None:  # a Charge carries UTC
            expires_at = expires_at.replace(tzinfo=timezone.utc)
        answer = self._call(
            "create",
            lambda: self._sdk.pay(
                description=_description(charge.description),
                out_trade_no=charge.order_id,
                amount={"total": charge.amount_fen, "currency": "CNY"},
                time_expire=expires_at.astimezone(CHINA).isoformat(timespec="seconds"),
                pay_type=WeChatPayType.NATIVE,
            ),
        )
        code_url = answer.data.get("code_url") if isinstance(answer.data, dict) else None
        if (
            answer.status != 200
            or not isinstance(code_url, str)
            or not PAYABLE_CODE.fullmatch(code_url)
        ):
            raise self._failed("create", answer)
        return code_url

    def query(self, order_id: str) -> Report:
        answer = self._call("query", lambda: self._sdk.query(out_trade_no=order_id))
        if answer.status == 404 and answer.code == "ORDER_NOT_EXIST":
            return Report(order_id, "unpaid", None, "CNY", None, None)
        if answer.status != 200 or not isinstance(answer.data, dict):
            raise self._failed("query", answer)
        try:
            report = self._report(answer.data)
        except _NotOurs as other:
            raise ProviderError(f"WeChat Pay query answered {other}") from None
        except _Unusable as unusable:
            raise UnusableAnswer(f"WeChat Pay query answered {unusable}") from None
        if report.order_id != order_id:
            raise UnusableAnswer("WeChat Pay query answered another out_trade_no")
        return report

    def close(self, order_id: str) -> Report | None:
        answer = self._call("close", lambda: self._sdk.close(out_trade_no=order_id))
        if answer.status in (200, 204) or answer.code == "ORDER_NOT_EXIST":
            return None
        if answer.code == "ORDERPAID":
            raise NotClosed("WeChat Pay close refused: ORDERPAID")
        raise self._failed("close", answer)

    def _call(self, what: str, call: Callable[[], tuple[int, Any]]) -> _Answer:
        from app.payments import bounded  # cold start: the deadline's hook, only on a call

        try:
            status, content = bounded.call(call, self.timeout_s)
        except bounded.OutOfTime as late:
            raise ProviderError(f"WeChat Pay {what}: {late}") from None
        except requests.Timeout:
            raise ProviderError(f"WeChat Pay {what}: no answer within {TIMEOUT_S} s") from None
        except requests.ConnectionError:
            raise ProviderError(f"WeChat Pay {what}: connection failed") from None
        except requests.RequestException as exc:
            raise ProviderError(f"WeChat Pay {what}: {type(exc).__name__}") from None
        except Exception as exc:  # noqa: BLE001 - the SDK raises bare Exception; its texts hold no key
            # Its two texts for an answer not signed by the platform: a signature that does not
            # verify, and a missing or other Wechatpay-Signature-Type ("algorithm").
            unsigned = any(word in str(exc) for word in ("verify the signature", "algorithm"))
            reason = (
                "the answer's signature does not verify"
                if unsigned
                else f"the SDK failed ({type(exc).__name__})"
            )
            raise ProviderError(f"WeChat Pay {what}: {reason}") from None
        data: Any = None
        if isinstance(content, str) and content:
            try:
                data = json_values.decode(content.encode(), max_bytes=JSON_MAX_BYTES)
            except json_values.Refused:
                data = None
        code = data.get("code") if isinstance(data, dict) else None
        return _Answer(int(status), data, _error_code(code))

    @staticmethod
    def _failed(what: str, answer: _Answer) -> ProviderError:
        if 200 <= answer.status < 300:
            return ProviderError(f"WeChat Pay {what}: HTTP {answer.status} without a usable body")
        return ProviderError(f"WeChat Pay {what}: HTTP {answer.status} {answer.code or ''}".strip())

    # ------------------------------------------------------------ notifications

    def verify(self, headers: dict[str, str], body: bytes) -> Report:
        if any(not headers.get(name) for name in SIGNATURE_HEADERS):
            raise Rejected("notification without WeChat Pay's signature headers", 401)
        if headers.get("wechatpay-signature-type") != SIGNATURE_TYPE:
            raise Rejected("notification signature type is not WECHATPAY2-SHA256-RSA2048", 401)
        # Checked before the SDK sees it: for an unknown serial the SDK downloads platform
        # certificates, and in public-key mode we trust none.
        if headers["wechatpay-serial"] != self.public_key_id:
            raise Rejected("notification signed under a serial that is not our public key", 401)
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise Rejected("notification body is not UTF-8", 400) from None
        if not _looks_like_an_event(body):
            raise Rejected("notification body is not an encrypted WeChat Pay event", 400)
        sdk_headers = {
            name: headers[name] for name in (*SIGNATURE_HEADERS, "wechatpay-signature-type")
        }
        try:
            event = self._sdk.callback(sdk_headers, text)
        except Exception:  # noqa: BLE001 - past the signature, the SDK trips on odd shapes as anything
            raise Rejected("notification body is not an encrypted WeChat Pay event", 400) from None
        if event is None:
            # With the shape checked, the SDK answers None alike for a signature that does not
            # verify (a tampered body, another key) and a resource that does not decrypt under
            # our APIv3 key.
            raise Rejected("notification signature or encryption does not verify", 401)
        timestamp = headers["wechatpay-timestamp"]
        if not timestamp.isdigit() or abs(int(timestamp) - self._clock()) > MAX_SKEW_S:
            raise Rejected("notification timestamp is more than 5 minutes off", 400)
        resource = event.get("resource") if isinstance(event, dict) else None
        if not isinstance(resource, dict):
            raise Rejected("notification resource is not a transaction", 400)
        # A JSON value of any type: looked up as text, as a list or an object cannot be.
        event_type = str(event.get("event_type"))
        try:
            # A refund made at the merchant platform may be sent here: its resource is a refund.
            report = self._report(resource, refund_event=event_type in wechatpay_refund.EVENTS)
        except _NotOurs as other:
            raise Rejected(f"notification carries {other}", 400) from None
        except _Unusable as unusable:
            raise Unusable(f"notification carries {unusable}") from None
        if report.state == "paid" and event_type != "TRANSACTION.SUCCESS":
            raise Rejected("notification of a paid trade is not a TRANSACTION.SUCCESS event", 400)
        return report

    # ------------------------------------------------------------ transactions

    def _report(self, tx: dict[str, Any], *, refund_event: bool = False) -> Report:
        """A transaction (query answer or decrypted notification) as a Report, once its
        mchid and appid are ours (_NotOurs otherwise) and its values usable (_Unusable); or,
        from a refund's notification, a refund of one, which carries no appid."""
        if tx.get("mchid") != self.mchid:
            raise _NotOurs("another mchid")
        refund = wechatpay_refund.refund(tx) if refund_event else None
        if refund is None and tx.get("appid") != self.appid:
            raise _NotOurs("another appid")
        order_id = tx.get("out_trade_no")
        if not isinstance(order_id, str) or not order_id:
            raise _Unusable("no out_trade_no")
        if not OUT_TRADE_NO.fullmatch(order_id):
            raise _Unusable("an out_trade_no that is not 6-32 of [0-9A-Za-z_-|*]")
        state = "refunded" if refund else _STATES.get(str(tx.get("trade_state")))
        if state is None:
            raise _Unusable("an unknown trade_state")
        amount = tx.get("amount")
        if amount is not None and not isinstance(amount, dict):
            raise _Unusable("an amount that is not an object")
        amount = amount or {}
        total = amount.get("total")
        if total is not None and (not isinstance(total, int) or isinstance(total, bool)):
            raise _Unusable("an amount.total that is not an integer")
        # An unpaid trade's amount has only payer_currency.
        currency = amount.get("currency") or amount.get("payer_currency") or "CNY"
        if not isinstance(currency, str) or not CURRENCY.fullmatch(currency):
            # Not echoed: it would go into the log line and the answer to WeChat Pay.
            raise _Unusable("a currency that is not an ISO 4217 code")
        trade_id = tx.get("transaction_id")
        if trade_id is not None and not isinstance(trade_id, str):
            raise _Unusable("a transaction_id that is not a string")
        if trade_id and not TRADE_ID.fullmatch(trade_id):
            raise _Unusable(
                f"a transaction_id an order cannot record (not 1-{TRADE_ID_MAX_CHARS} "
                "printable ASCII characters)"
            )
        paid_at = None
        if state == "paid" and tx.get("success_time") is not None:
            paid_at = _utc(tx["success_time"])
        return Report(
            order_id=order_id,
            state=state,
            amount_fen=total,
            currency=currency,
            provider_trade_id=trade_id or None,
            paid_at=paid_at,
            refund=refund,
        )


def _description(text: str) -> str:
    """`text` cut to DESCRIPTION_MAX_BYTES at a character's edge."""
    return text.encode()[:DESCRIPTION_MAX_BYTES].decode(errors="ignore")


def _error_code(code: object) -> str | None:
    """An error answer's `code` as it may be compared and written: WeChat Pay's shape of
    code, UNREADABLE_CODE for anything else (a hostile or broken answer's text, of any
    length), None when there is none."""
    if code is None:
        return None
    return code if isinstance(code, str) and ERROR_CODE.fullmatch(code) else UNREADABLE_CODE


def _looks_like_an_event(body: bytes) -> bool:
    """Whether the body is an event with an AES-GCM resource, the only shape for which the
    SDK's None means "does not verify" (it answers None for other shapes too). Checked under
    the JSON policy, before the SDK parses the body itself (with no depth limit)."""
    try:
        event = json_values.decode(body, max_bytes=JSON_MAX_BYTES)
    except json_values.Refused:
        return False
    if not isinstance(event, dict):
        return False
    resource = event.get("resource")
    return (
        event.get("resource_type") == "encrypt-resource"
        and isinstance(resource, dict)
        and resource.get("algorithm") == "AEAD_AES_256_GCM"
        and all(isinstance(resource.get(k), str) and resource[k] for k in ("nonce", "ciphertext"))
    )


def _utc(value: Any) -> datetime:
    """An RFC 3339 time (`2026-12-05T20:00:00+08:00`, `2026-12-05T12:00:00.5Z`) as aware UTC."""
    moment = rfc3339(value) if isinstance(value, str) else None
    if moment is None:
        raise _Unusable("a success_time that is not an RFC 3339 time")
    try:
        return moment.astimezone(timezone.utc)
    except OverflowError:  # 0001-01-01T00:00:00+08:00: in UTC it falls before year 1
        raise _Unusable("a success_time that is not a time in UTC") from None
