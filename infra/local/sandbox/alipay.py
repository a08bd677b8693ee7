"""A simulator of the Alipay open platform gateway (`alipay.trade.precreate`, `.query` and
`.close` on `/gateway.do`) and of a buyer paying a precreated trade, for the local cloud's
sandbox and the tests' fake.

`AlipaySim` holds Alipay's RSA key pair and the app's (the app's private key is what the
sandbox hands our adapter, see `app_settings`), checks every request as the gateway does
(app id, sign_type RSA2, charset, a timestamp in Beijing time within 15 minutes of the
gateway's clock, the RSA2 `sign` over the sorted parameters), keeps trades in memory and
answers like Alipay: `{"alipay_trade_<x>_response": {...}, "sign": ...}`, the sign being RSA2
over the exact text of the inner object. As on Alipay, a precreated trade does not exist for
query and close until the buyer scans its code (opens the pay page); it stays payable until
its `time_expire`.

It owns no transport: `handle(method, path_with_query, headers, body)` answers one HTTP
request, so any server can serve it. It must not import from tests/.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import html
import json
import re
import secrets
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from infra.local.sandbox.answer import SimAnswer

GATEWAY_PATH = "/gateway.do"
PAY_PATH = "/sandbox/pay/"
BEIJING = timezone(timedelta(hours=8))
ALIPAY_TIME = "%Y-%m-%d %H:%M:%S"
# Alipay refuses a request whose timestamp is further than this from its own clock.
TIMESTAMP_TOLERANCE = timedelta(minutes=15)
DELIVERY_TIMEOUT_S = 5
ANSWER_TYPE = "text/html;charset=utf-8"  # what the real gateway labels its JSON with
FORM_TYPE = "application/x-www-form-urlencoded; charset=utf-8"
AMOUNT = re.compile(r"(0|[1-9]\d{0,8})(\.\d{1,2})?")
MAX_AMOUNT = Decimal("100000000")
SELLER_ID = "2088000000000001"
BUYER_ID = "2088000000000002"

WAIT_BUYER_PAY = "WAIT_BUYER_PAY"
TRADE_SUCCESS = "TRADE_SUCCESS"
TRADE_CLOSED = "TRADE_CLOSED"

# The public parameters every request carries, and the sub_code naming each when missing.
REQUIRED = {
    "app_id": "app-id",
    "sign_type": "signature-type",
    "sign": "signature",
    "timestamp": "timestamp",
    "version": "version",
    "charset": "charset",
}

PRECREATE = "alipay.trade.precreate"
# Characters a trade's subject may not hold (the examples Alipay's documentation names).
SUBJECT_REFUSED = ("/", "=", "&")
QUERY = "alipay.trade.query"
CLOSE = "alipay.trade.close"


@dataclass(frozen=True)
class Notification:
    """An asynchronous notification as Alipay POSTs it to a trade's notify_url."""

    out_trade_no: str
    fields: dict[str, str]  # what `body` carries, as sent (tampering included)
    body: bytes
    content_type: str = FORM_TYPE


@dataclass
class Trade:
    out_trade_no: str
    total_amount: str  # as the app sent it
    subject: str
    notify_url: str
    time_expire: datetime | None  # aware
    trade_no: str
    qr_code: str
    gmt_create: datetime
    status: str = WAIT_BUYER_PAY
    scanned: bool = False  # Alipay knows the trade (query, close) once its code is scanned
    gmt_payment: datetime | None = None


@dataclass(frozen=True)
class GatewayCall:
    """A request the gateway received, and how it answered (`code`, `sub_code`)."""

    http_method: str
    api: str
    params: dict[str, str]  # every parameter as received, `sign` included
    biz: dict[str, Any]  # biz_content, parsed
    code: str
    sub_code: str | None


@dataclass(frozen=True)
class Delivery:
    out_trade_no: str
    url: str
    answer: str  # the merchant's answer text; Alipay retries anything but `success`


class TradeError(Exception):
    """A buyer action the trade does not allow (unknown, closed, already paid)."""


class _Refused(Exception):
    """An error answer: Alipay's public code and message, and the specific sub_code."""

    def __init__(self, code: str, msg: str, sub_code: str, sub_msg: str) -> None:
        super().__init__(sub_code)
        self.answer = {"code": code, "msg": msg, "sub_code": sub_code, "sub_msg": sub_msg}


def _missing(what: str, text: str) -> _Refused:
    return _Refused("40001", "Missing Required Arguments", f"isv.missing-{what}", text)


def _invalid(what: str, text: str) -> _Refused:
    return _Refused("40002", "Invalid Arguments", f"isv.invalid-{what}", text)


def _business(sub_code: str, text: str) -> _Refused:
    return _Refused("40004", "Business Failed", sub_code, text)


def new_rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def private_pem(key: rsa.RSAPrivateKey) -> str:
    """PKCS#8 PEM (`BEGIN PRIVATE KEY`)."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def public_pem(key: rsa.RSAPrivateKey | rsa.RSAPublicKey) -> str:
    """SubjectPublicKeyInfo PEM (`BEGIN PUBLIC KEY`), the form Alipay's console gives."""
    public = key.public_key() if isinstance(key, rsa.RSAPrivateKey) else key
    return public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


def rsa2_sign(key: rsa.RSAPrivateKey, text: str) -> str:
    """Alipay's RSA2: base64 of RSA PKCS#1 v1.5 over SHA-256 of the UTF-8 text."""
    signature = key.sign(text.encode(), padding.PKCS1v15(), hashes.SHA256())
    return base64.b64encode(signature).decode()


def rsa2_verifies(key: rsa.RSAPublicKey, text: str, sign: str) -> bool:
    try:
        key.verify(base64.b64decode(sign), text.encode(), padding.PKCS1v15(), hashes.SHA256())
    except (InvalidSignature, binascii.Error, ValueError):
        return False
    return True


def signed_text(params: Mapping[str, str], *, exclude: tuple[str, ...]) -> str:
    """What a sign covers: the sorted `k=v` pairs, values as they are (not URL-encoded),
    joined with `&`. Requests exclude `sign`; notifications `sign` and `sign_type`."""
    return "&".join(f"{k}={v}" for k, v in sorted(params.items()) if k not in exclude)


def alipay_time(moment: datetime) -> str:
    return moment.astimezone(BEIJING).strftime(ALIPAY_TIME)


def _parse_time(text: str) -> datetime | None:
    try:
        return datetime.strptime(text, ALIPAY_TIME).replace(tzinfo=BEIJING)
    except ValueError:
        return None


def _response_key(api: str) -> str:
    return api.replace(".", "_") + "_response"


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


class AlipaySim:
    """The Alipay gateway for one app, whose trades are paid to `seller_id` (the merchant's
    PID, which notifications carry). `base_url` is where the simulator is served (the
    precreated `qr_code` is `<base_url>/sandbox/pay/<out_trade_no>`); without it, the
    request's Host header is used. `clock` gives the gateway's time (aware). The keys are
    generated (RSA 2048) unless given."""

    def __init__(
        self,
        app_id: str = "2021000000000001",
        *,
        seller_id: str = SELLER_ID,
        base_url: str | None = None,
        clock: Callable[[], datetime] = _utc_now,
        alipay_key: rsa.RSAPrivateKey | None = None,
        app_key: rsa.RSAPrivateKey | None = None,
    ) -> None:
        self.app_id = app_id
        self.seller_id = seller_id
        self.base_url = base_url.rstrip("/") if base_url else None
        self.clock = clock
        # Alipay's key signs answers and notifications; the app's public half checks
        # requests. New ones unless given (to keep an adapter's settings valid).
        self.alipay_key = alipay_key or new_rsa_key()
        self.app_key = app_key or new_rsa_key()
        self.trades: dict[str, Trade] = {}
        self.calls: list[GatewayCall] = []
        self.deliveries: list[Delivery] = []
        self._lock = threading.RLock()

    # ------------------------------------------------------------ configuration

    def app_settings(self) -> dict[str, str]:
        """The variables that point our adapter's keys, app id and seller at this simulator;
        ALIPAY_GATEWAY and ALIPAY_NOTIFY_URL are for whoever serves it to set."""
        return {
            "ALIPAY_APPID": self.app_id,
            "ALIPAY_SELLER_ID": self.seller_id,
            "ALIPAY_PRIVATE_KEY": private_pem(self.app_key),
            "ALIPAY_PUBLIC_KEY": public_pem(self.alipay_key),
        }

    @property
    def app_public_key(self) -> rsa.RSAPublicKey:
        return self.app_key.public_key()

    # ------------------------------------------------------------ HTTP

    def handle(
        self, method: str, path_with_query: str, headers: Mapping[str, str], body: bytes
    ) -> SimAnswer:
        url = urlsplit(path_with_query)
        lower = {k.lower(): v for k, v in headers.items()}
        if url.path == GATEWAY_PATH:
            if method not in ("GET", "POST"):
                return _page(405, "Method not allowed", "<p>GET or POST only.</p>")
            return self._gateway(method, url.query, lower, body)
        if url.path.startswith(PAY_PATH):
            out_trade_no = unquote(url.path[len(PAY_PATH) :])
            if method == "GET":
                return self._pay_page(out_trade_no)
            if method == "POST":
                return self._pay_from_page(out_trade_no)
            return _page(405, "Method not allowed", "<p>GET or POST only.</p>")
        return _page(404, "Not found", "<p>Nothing here.</p>")

    def signed_answer(
        self, api: str, response: Mapping[str, Any], key: rsa.RSAPrivateKey | None = None
    ) -> bytes:
        """An answer body as Alipay writes it: the response object as compact JSON, then
        the sign over exactly that text (with Alipay's key unless another is given)."""
        inner = json.dumps(response, ensure_ascii=False, separators=(",", ":"))
        try:
            inner.encode()
        except UnicodeEncodeError:  # a lone surrogate a test puts in: escaped, as JSON may
            inner = json.dumps(response, separators=(",", ":"))
        sign = rsa2_sign(key or self.alipay_key, inner)
        return f'{{"{_response_key(api)}":{inner},"sign":"{sign}"}}'.encode()

    def _gateway(
        self, http_method: str, query: str, headers: Mapping[str, str], body: bytes
    ) -> SimAnswer:
        params = dict(parse_qsl(query, keep_blank_values=True))
        if http_method == "POST" and headers.get("content-type", "").startswith(
            "application/x-www-form-urlencoded"
        ):
            params.update(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
        api = params.get("method", "")
        if api not in (PRECREATE, QUERY, CLOSE):
            # No API to answer for: Alipay answers an unsigned `error_response`.
            if api:
                error = _invalid("method", "不存在的方法名").answer
            else:
                error = _missing("method", "缺少方法名参数").answer
            data = json.dumps({"error_response": error}, ensure_ascii=False).encode()
            self._record(http_method, api, params, {}, error)
            return SimAnswer(200, {"Content-Type": ANSWER_TYPE}, data)
        biz: dict[str, Any] = {}
        with self._lock:
            try:
                biz = self._checked(params)
                answer = self._dispatch(api, params, biz, headers)
            except _Refused as refused:
                answer = refused.answer
            self._record(http_method, api, params, biz, answer)
        return SimAnswer(200, {"Content-Type": ANSWER_TYPE}, self.signed_answer(api, answer))

    def _record(
        self,
        http_method: str,
        api: str,
        params: dict[str, str],
        biz: dict[str, Any],
        answer: Mapping[str, Any],
    ) -> None:
        with self._lock:
            self.calls.append(
                GatewayCall(
                    http_method, api, params, biz, str(answer["code"]), answer.get("sub_code")
                )
            )

    def _checked(self, params: Mapping[str, str]) -> dict[str, Any]:
        """The request's biz_content, once its public parameters and sign pass."""
        for name, what in REQUIRED.items():
            if not params.get(name):
                raise _missing(what, f"缺少{name}参数")
        if params["app_id"] != self.app_id:
            raise _invalid("app-id", "无效的AppID参数")
        if params["sign_type"] != "RSA2":
            raise _invalid("signature-type", "无效的签名类型")
        if params["charset"].lower() != "utf-8":
            raise _invalid("charset", "字符集错误")
        sent = _parse_time(params["timestamp"])
        if sent is None or abs(self.clock() - sent) > TIMESTAMP_TOLERANCE:
            raise _invalid("timestamp", "非法的时间戳参数")
        if not rsa2_verifies(
            self.app_public_key, signed_text(params, exclude=("sign",)), params["sign"]
        ):
            raise _invalid("signature", "验签出错")
        try:
            biz = json.loads(params.get("biz_content") or "{}")
        except ValueError:
            raise _business("ACQ.INVALID_PARAMETER", "biz_content 不是 JSON") from None
        if not isinstance(biz, dict):
            raise _business("ACQ.INVALID_PARAMETER", "biz_content 不是 JSON 对象")
        return biz

    def _dispatch(
        self,
        api: str,
        params: Mapping[str, str],
        biz: dict[str, Any],
        headers: Mapping[str, str],
    ) -> dict[str, Any]:
        if api == PRECREATE:
            return self._precreate(params, biz, headers)
        trade = self._known(biz)
        if trade is None:
            raise _business("ACQ.TRADE_NOT_EXIST", "交易不存在")
        if api == QUERY:
            return _query_answer(trade)
        if trade.status != WAIT_BUYER_PAY:
            raise _business("ACQ.TRADE_STATUS_ERROR", "交易状态不合法")
        trade.status = TRADE_CLOSED
        answer = {"code": "10000", "msg": "Success"}
        return {**answer, "trade_no": trade.trade_no, "out_trade_no": trade.out_trade_no}

    def _precreate(
        self, params: Mapping[str, str], biz: dict[str, Any], headers: Mapping[str, str]
    ) -> dict[str, Any]:
        out_trade_no, subject = biz.get("out_trade_no"), biz.get("subject")
        amount = str(biz.get("total_amount", ""))
        if not isinstance(out_trade_no, str) or not 0 < len(out_trade_no) <= 64:
            raise _business("ACQ.INVALID_PARAMETER", "out_trade_no 无效")
        if not isinstance(subject, str) or not 0 < len(subject) <= 256:
            raise _business("ACQ.INVALID_PARAMETER", "subject 无效")
        # Alipay's rule for the title: no special characters, such as /, = and &.
        if any(mark in subject for mark in SUBJECT_REFUSED):
            raise _business("ACQ.INVALID_PARAMETER", "subject 含特殊字符")
        if not AMOUNT.fullmatch(amount) or not Decimal("0.01") <= Decimal(amount) <= MAX_AMOUNT:
            raise _business("ACQ.INVALID_PARAMETER", "total_amount 无效")
        expire: datetime | None = None
        if "time_expire" in biz:
            expire = _parse_time(str(biz["time_expire"]))
            if expire is None:
                raise _business("ACQ.INVALID_PARAMETER", "time_expire 格式错误")
        trade = self.trades.get(out_trade_no)
        if trade is not None:
            self._expire(trade)
            if trade.status == TRADE_SUCCESS:
                raise _business("ACQ.TRADE_HAS_SUCCESS", "交易已被支付")
            if trade.status == TRADE_CLOSED:
                raise _business("ACQ.TRADE_HAS_CLOSE", "交易已经关闭")
            if (Decimal(trade.total_amount), trade.subject) != (Decimal(amount), subject):
                raise _business("ACQ.CONTEXT_INCONSISTENT", "交易信息被篡改")
        else:
            base = self.base_url or f"http://{headers.get('host', '127.0.0.1')}"
            now = self.clock()
            trade = Trade(
                out_trade_no=out_trade_no,
                total_amount=amount,
                subject=subject,
                notify_url=params.get("notify_url", ""),
                time_expire=expire,
                trade_no=alipay_time(now)[:10].replace("-", "") + "22001" + _digits(15),
                qr_code=f"{base}{PAY_PATH}{quote(out_trade_no, safe='')}",
                gmt_create=now,
            )
            self.trades[out_trade_no] = trade
        answer = {"code": "10000", "msg": "Success"}
        return {**answer, "out_trade_no": out_trade_no, "qr_code": trade.qr_code}

    def _known(self, biz: Mapping[str, Any]) -> Trade | None:
        """The trade named by out_trade_no or trade_no, if Alipay knows it (scanned)."""
        trade = self.trades.get(str(biz.get("out_trade_no", "")))
        if trade is None and biz.get("trade_no"):
            trade = next((t for t in self.trades.values() if t.trade_no == biz["trade_no"]), None)
        if trade is None or not trade.scanned:
            return None
        self._expire(trade)
        return trade

    def _expire(self, trade: Trade) -> None:
        if (
            trade.status == WAIT_BUYER_PAY
            and trade.time_expire is not None
            and self.clock() >= trade.time_expire
        ):
            trade.status = TRADE_CLOSED

    # ------------------------------------------------------------ the buyer

    def trade(self, out_trade_no: str) -> Trade:
        """A copy of the trade as it stands (TradeError if it was never precreated)."""
        with self._lock:
            trade = self.trades.get(out_trade_no)
            if trade is None:
                raise TradeError(f"no trade {out_trade_no!r}")
            self._expire(trade)
            return dataclasses.replace(trade)

    def scan(self, out_trade_no: str) -> Trade:
        """The buyer scans the code: Alipay now knows the trade (WAIT_BUYER_PAY)."""
        with self._lock:
            trade = self.trades.get(out_trade_no)
            if trade is None:
                raise TradeError(f"no trade {out_trade_no!r}")
            self._expire(trade)
            trade.scanned = True
            return dataclasses.replace(trade)

    def pay(self, out_trade_no: str) -> Notification:
        """The buyer pays: the trade is TRADE_SUCCESS, and this is its notification, to
        `deliver` to the trade's notify_url."""
        with self._lock:
            trade = self.trades.get(out_trade_no)
            if trade is None:
                raise TradeError(f"no trade {out_trade_no!r}")
            self._expire(trade)
            if trade.status != WAIT_BUYER_PAY:
                raise TradeError(f"trade {out_trade_no!r} is {trade.status}")
            trade.scanned = True
            trade.status = TRADE_SUCCESS
            trade.gmt_payment = self.clock()
        return self.notification(out_trade_no)

    def notification(
        self,
        out_trade_no: str,
        /,
        *,
        key: rsa.RSAPrivateKey | None = None,
        tampered: Mapping[str, str | None] | None = None,
        **fields: str | None,
    ) -> Notification:
        """The trade's notification as it stands, with `fields` changed first (None drops
        one; `out_trade_no=` among them names another trade), signed with Alipay's key or `key`,
        then `tampered` changed after signing."""
        trade = self.trade(out_trade_no)
        values = _notification_fields(trade, self.app_id, self.seller_id, self.clock())
        _apply(values, fields)
        values["sign"] = rsa2_sign(
            key or self.alipay_key, signed_text(values, exclude=("sign", "sign_type"))
        )
        _apply(values, tampered or {})
        return Notification(trade.out_trade_no, values, urlencode(values).encode())

    def deliver(self, notification: Notification, url: str | None = None) -> str:
        """POST the notification (to `url`, or its trade's notify_url) and return the answer
        text. Connection failures raise OSError (urllib.error.URLError)."""
        target = url or self.trade(notification.out_trade_no).notify_url
        if urlsplit(target).scheme not in ("http", "https"):
            raise ValueError("notify_url is not an http(s) URL")
        # The scheme is checked above: http(s) only, as Alipay calls.
        request = urllib.request.Request(  # noqa: S310
            target,
            data=notification.body,
            method="POST",
            headers={"Content-Type": notification.content_type},
        )
        answer: str
        try:
            with urllib.request.urlopen(request, timeout=DELIVERY_TIMEOUT_S) as reply:  # noqa: S310
                answer = reply.read().decode("utf-8", "replace")
        except urllib.error.HTTPError as error:
            answer = bytes(error.read()).decode("utf-8", "replace")
        with self._lock:
            self.deliveries.append(Delivery(notification.out_trade_no, target, answer))
        return answer

    # ------------------------------------------------------------ the pay page

    def _pay_page(self, out_trade_no: str) -> SimAnswer:
        try:
            trade = self.scan(out_trade_no)
        except TradeError:
            return _page(404, "Unknown trade", "<p>No such trade.</p>")
        button = ""
        if trade.status == WAIT_BUYER_PAY:
            button = (
                f'<form method="post" action="{html.escape(trade.qr_code)}">'
                '<button type="submit">Pay</button></form>'
            )
        return _page(
            200,
            "Alipay sandbox",
            f"<p>{html.escape(trade.subject)}</p>"
            f"<p>¥{html.escape(trade.total_amount)}</p>"
            f"<p>Trade {html.escape(trade.out_trade_no)}: {trade.status}</p>{button}",
        )

    def _pay_from_page(self, out_trade_no: str) -> SimAnswer:
        try:
            notification = self.pay(out_trade_no)
        except TradeError as error:
            return _page(409, "Not payable", f"<p>{html.escape(str(error))}</p>")
        trade = self.trade(out_trade_no)
        if not trade.notify_url:
            return _page(200, "Paid", "<p>Paid. The trade has no notify_url to notify.</p>")
        try:
            answer = self.deliver(notification)
        except (OSError, ValueError) as error:
            text = f"Paid. The notification was not delivered ({type(error).__name__})."
            return _page(502, "Paid", f"<p>{text}</p>")
        return _page(
            200, "Paid", f"<p>Paid. The merchant answered: <b>{html.escape(answer)}</b></p>"
        )


def _query_answer(trade: Trade) -> dict[str, Any]:
    paid = trade.gmt_payment is not None
    amount = trade.total_amount if paid else "0.00"
    answer = {
        "code": "10000",
        "msg": "Success",
        "buyer_logon_id": "sbx***@sandbox.com",
        "buyer_pay_amount": amount,
        "buyer_user_id": BUYER_ID,
        "invoice_amount": amount,
        "out_trade_no": trade.out_trade_no,
        "point_amount": "0.00",
        "receipt_amount": amount,
        "total_amount": trade.total_amount,
        "trade_no": trade.trade_no,
        "trade_status": trade.status,
    }
    if trade.gmt_payment is not None:
        answer["send_pay_date"] = alipay_time(trade.gmt_payment)
    return answer


def _notification_fields(
    trade: Trade, app_id: str, seller_id: str, now: datetime
) -> dict[str, str]:
    paid = trade.gmt_payment is not None
    amount = trade.total_amount if paid else "0.00"
    values = {
        "gmt_create": alipay_time(trade.gmt_create),
        "charset": "utf-8",
        "seller_email": "sandbox-seller@example.com",
        "subject": trade.subject,
        "buyer_id": BUYER_ID,
        "invoice_amount": amount,
        "notify_id": secrets.token_hex(17),
        "fund_bill_list": json.dumps(
            [{"amount": amount, "fundChannel": "ALIPAYACCOUNT"}], separators=(",", ":")
        ),
        "notify_type": "trade_status_sync",
        "trade_status": trade.status,
        "receipt_amount": amount,
        "buyer_pay_amount": amount,
        "app_id": app_id,
        "sign_type": "RSA2",
        "seller_id": seller_id,
        "notify_time": alipay_time(now),
        "version": "1.0",
        "out_trade_no": trade.out_trade_no,
        "total_amount": trade.total_amount,
        "trade_no": trade.trade_no,
        "auth_app_id": app_id,
        "buyer_logon_id": "sbx***@sandbox.com",
        "point_amount": "0.00",
    }
    if trade.gmt_payment is not None:
        values["gmt_payment"] = alipay_time(trade.gmt_payment)
    return values


def _apply(values: dict[str, str], changes: Mapping[str, str | None]) -> None:
    for name, value in changes.items():
        if value is None:
            values.pop(name, None)
        else:
            values[name] = value


def _digits(count: int) -> str:
    return "".join(secrets.choice("0123456789") for _ in range(count))


def _page(status: int, title: str, content: str) -> SimAnswer:
    text = (
        '<!doctype html><html lang="zh-CN"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title></head>"
        f"<body><h1>{html.escape(title)}</h1>{content}</body></html>"
    )
    return SimAnswer(status, {"Content-Type": "text/html; charset=utf-8"}, text.encode())
