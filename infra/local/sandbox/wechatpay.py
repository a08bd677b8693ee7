"""A simulator of WeChat Pay v3 (Native payments, platform public-key mode), for any HTTP server.

`WechatPaySim` is the provider's side of the protocol. It holds the platform key pair (the
public half and `public_key_id` are what a merchant configures to check WeChat Pay's
signatures), one merchant account (mchid, appid, the APIv3 key, and a merchant key pair it
generated: the merchant signs its requests with the private half) and the trades, in memory.

- `handle(method, path_with_query, headers, body)` answers one request as WeChat Pay does:
  `POST /v3/pay/transactions/native`, `GET /v3/pay/transactions/out-trade-no/{no}?mchid=`,
  `POST /v3/pay/transactions/out-trade-no/{no}/close`, each refused with 401 SIGN_ERROR
  unless its `Authorization` verifies under the merchant key; JSON answers, errors as
  `{"code", "message"}`, every answer signed with the platform key. It also serves the
  sandbox pay page (`GET`/`POST /sandbox/pay/{no}`), which the `code_url` points at.
- `pay(no)` pays a trade and returns its notification (signed headers, encrypted body);
  `notification(no, ...)` builds one with any field changed, for tests; `deliver()` POSTs one.
- `merchant_settings()` is the environment that points our adapter's keys at this simulator.

It imports nothing from tests/: the local cloud serves it for `make run`.
"""

from __future__ import annotations

import base64
import html
import json
import re
import secrets
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from infra.local.sandbox.answer import SimAnswer

SIGNATURE_TYPE = "WECHATPAY2-SHA256-RSA2048"
MAX_SKEW_S = 300  # WeChat Pay refuses a request whose signed timestamp is 5 minutes off
CHINA = timezone(timedelta(hours=8))  # WeChat Pay speaks RFC 3339 times in +08:00
DELIVER_TIMEOUT_S = 5
JSON_TYPE = "application/json; charset=utf-8"
# WeChat's rule for out_trade_no: 6 to 32 of digits, letters, `_-|*`.
OUT_TRADE_NO = re.compile(r"^[0-9A-Za-z_\-|*]{6,32}$")
# `description` is string[1,127]; counted here in UTF-8 bytes, the stricter reading.
DESCRIPTION_MAX_BYTES = 127
TIME_EXPIRE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?[+-]\d{2}:\d{2}$")

_AUTH_FIELD = re.compile(r'(\w+)="([^"]*)"')
_NATIVE = "/v3/pay/transactions/native"
_TRADE = re.compile(r"^/v3/pay/transactions/out-trade-no/(?P<no>[^/]+)$")
_CLOSE = re.compile(r"^/v3/pay/transactions/out-trade-no/(?P<no>[^/]+)/close$")
_PAY_PAGE = re.compile(r"^/sandbox/pay/(?P<no>[^/]+)$")

TradeStatus = Literal["NOTPAY", "SUCCESS", "CLOSED"]
_STATE_DESC = {
    "NOTPAY": "订单未支付",
    "SUCCESS": "支付成功",
    "CLOSED": "已关闭",
    "USERPAYING": "用户支付中",
    "PAYERROR": "支付失败",
    "REVOKED": "已撤销",
    "REFUND": "转入退款",
}
_REFUND_SUMMARY = {"SUCCESS": "退款成功", "ABNORMAL": "退款异常", "CLOSED": "退款关闭"}


@dataclass(frozen=True)
class Notification:
    """A notification as WeChat Pay POSTs it to a trade's notify_url."""

    out_trade_no: str
    headers: dict[str, str]  # Wechatpay-Timestamp, -Nonce, -Serial, -Signature, -Signature-Type
    body: bytes

    @property
    def lower_headers(self) -> dict[str, str]:
        """The headers with lower-case names, as a serverless event carries them."""
        return {name.lower(): value for name, value in self.headers.items()}


@dataclass
class Trade:
    out_trade_no: str
    amount_fen: int
    description: str
    notify_url: str
    time_expire: datetime | None
    state: TradeStatus = "NOTPAY"
    transaction_id: str | None = None
    success_time: datetime | None = None
    openid: str = field(default_factory=lambda: "o" + secrets.token_urlsafe(20))


class TradeNotPayable(Exception):
    """`pay()` of a trade that is unknown, not NOTPAY, or past its time_expire."""


def _pem_public(key: rsa.RSAPublicKey) -> str:
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(CHINA).isoformat(timespec="seconds")


def sign(key: rsa.RSAPrivateKey, text: str) -> str:
    """WeChat Pay's signature: base64 of RSA PKCS#1 v1.5 over SHA-256 of the UTF-8 text."""
    signature = key.sign(text.encode(), padding.PKCS1v15(), hashes.SHA256())
    return base64.b64encode(signature).decode()


def encrypt_resource(
    apiv3_key: str, plaintext: str, associated_data: str, original_type: str = "transaction"
) -> dict[str, str]:
    """A notification's `resource`: AES-256-GCM under the APIv3 key with a 12-character nonce."""
    nonce = secrets.token_hex(6)
    sealed = AESGCM(apiv3_key.encode()).encrypt(
        nonce.encode(), plaintext.encode(), associated_data.encode()
    )
    return {
        "original_type": original_type,
        "algorithm": "AEAD_AES_256_GCM",
        "ciphertext": base64.b64encode(sealed).decode(),
        "associated_data": associated_data,
        "nonce": nonce,
    }


class WechatPaySim:
    def __init__(
        self,
        *,
        base_url: str | None = None,
        mchid: str = "1900000109",
        appid: str = "wxd678efh567hg6787",
        clock: Callable[[], float] = time.time,
    ) -> None:
        # Where code_url points (the pay page); None: the Host of the request that creates.
        self.base_url = base_url.rstrip("/") if base_url else None
        self.mchid = mchid
        self.appid = appid
        self.clock = clock
        self.platform_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.public_key_id = "PUB_KEY_ID_" + "".join(
            secrets.choice("0123456789") for _ in range(28)
        )
        self.merchant_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.cert_serial = secrets.token_hex(20).upper()
        self.apiv3_key = secrets.token_hex(16)  # 32 characters, as WeChat Pay requires
        self.trades: dict[str, Trade] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"WechatPaySim(mchid={self.mchid!r}, appid={self.appid!r})"

    # ------------------------------------------------------------ the merchant's side

    def merchant_settings(self, key_format: Literal["pkcs8", "pkcs1"] = "pkcs8") -> dict[str, str]:
        """The WECHATPAY_* variables (but the API base and notify URL) of our merchant."""
        private_format = (
            serialization.PrivateFormat.PKCS8
            if key_format == "pkcs8"
            else serialization.PrivateFormat.TraditionalOpenSSL
        )
        private_pem = self.merchant_key.private_bytes(
            serialization.Encoding.PEM, private_format, serialization.NoEncryption()
        ).decode()
        return {
            "WECHATPAY_MCHID": self.mchid,
            "WECHATPAY_APPID": self.appid,
            "WECHATPAY_PRIVATE_KEY": private_pem,
            "WECHATPAY_CERT_SERIAL": self.cert_serial,
            "WECHATPAY_APIV3_KEY": self.apiv3_key,
            "WECHATPAY_PUBLIC_KEY": _pem_public(self.platform_key.public_key()),
            "WECHATPAY_PUBLIC_KEY_ID": self.public_key_id,
        }

    # ------------------------------------------------------------ HTTP

    def handle(
        self, method: str, path_with_query: str, headers: Mapping[str, str], body: bytes
    ) -> SimAnswer:
        """The answer to one HTTP request (header names in any case)."""
        lower = {name.lower(): value for name, value in headers.items()}
        url = urlsplit(path_with_query)
        page = _PAY_PAGE.match(url.path)
        if page:
            return self._pay_page(method, page["no"])
        if not url.path.startswith("/v3/"):
            return self.error(404, "NOT_FOUND", "no such API")
        problem = self.authorization_problem(method, path_with_query, lower, body)
        if problem is not None:
            return self.error(401, "SIGN_ERROR", problem)
        try:
            data: Any = json.loads(body) if body else {}
        except ValueError:
            return self.error(400, "PARAM_ERROR", "body is not JSON")
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        if method == "POST" and url.path == _NATIVE:
            return self._native(data, lower)
        match = _TRADE.match(url.path)
        if method == "GET" and match:
            return self._query(match["no"], query.get("mchid"))
        match = _CLOSE.match(url.path)
        if method == "POST" and match:
            return self._close(match["no"], data)
        return self.error(404, "NOT_FOUND", "no such API")

    def authorization_problem(
        self, method: str, path_with_query: str, headers: Mapping[str, str], body: bytes
    ) -> str | None:
        """Why the request's `Authorization` does not prove it comes from our merchant, or
        None when it does: scheme, mchid, serial_no, a timestamp within 5 minutes, and the
        signature over `METHOD\\npath\\ntimestamp\\nnonce\\nbody\\n` under the merchant key."""
        lower = {name.lower(): value for name, value in headers.items()}
        scheme, _, rest = lower.get("authorization", "").partition(" ")
        if scheme != SIGNATURE_TYPE:
            return "Authorization is not WECHATPAY2-SHA256-RSA2048"
        fields = dict(_AUTH_FIELD.findall(rest))
        missing = {"mchid", "nonce_str", "signature", "timestamp", "serial_no"} - fields.keys()
        if missing:
            return "Authorization lacks " + ", ".join(sorted(missing))
        if fields["mchid"] != self.mchid:
            return "mchid is not a merchant here"
        if fields["serial_no"] != self.cert_serial:
            return "serial_no is not the merchant's certificate"
        if not fields["timestamp"].isdigit() or abs(int(fields["timestamp"]) - self.clock()) > (
            MAX_SKEW_S
        ):
            return "timestamp is more than 5 minutes off"
        text = (
            f"{method}\n{path_with_query}\n{fields['timestamp']}\n{fields['nonce_str']}\n"
            f"{body.decode('utf-8', 'replace')}\n"
        )
        try:
            self.merchant_key.public_key().verify(
                base64.b64decode(fields["signature"]),
                text.encode(),
                padding.PKCS1v15(),
                hashes.SHA256(),
            )
        except (InvalidSignature, ValueError):
            return "signature does not verify"
        return None

    def signed(
        self,
        status: int,
        payload: Any = None,
        *,
        key: rsa.RSAPrivateKey | None = None,
        serial: str | None = None,
    ) -> SimAnswer:
        """An answer with `payload` as its JSON body (none when None), signed as WeChat Pay
        signs: over `timestamp\\nnonce\\nbody\\n` with the platform key (or `key`)."""
        body = b"" if payload is None else _json_text(payload).encode()
        headers = self.signature_headers(body, key=key, serial=serial)
        headers["Request-ID"] = secrets.token_hex(16)
        if payload is not None:
            headers["Content-Type"] = JSON_TYPE
        return SimAnswer(status, headers, body)

    def error(self, status: int, code: str, message: str) -> SimAnswer:
        return self.signed(status, {"code": code, "message": message})

    def signature_headers(
        self,
        body: bytes,
        *,
        timestamp: int | None = None,
        key: rsa.RSAPrivateKey | None = None,
        serial: str | None = None,
    ) -> dict[str, str]:
        stamp = str(int(self.clock()) if timestamp is None else timestamp)
        nonce = secrets.token_hex(16)
        signature = sign(key or self.platform_key, f"{stamp}\n{nonce}\n{body.decode()}\n")
        return {
            "Wechatpay-Timestamp": stamp,
            "Wechatpay-Nonce": nonce,
            "Wechatpay-Serial": self.public_key_id if serial is None else serial,
            "Wechatpay-Signature": signature,
            "Wechatpay-Signature-Type": SIGNATURE_TYPE,
        }

    # ------------------------------------------------------------ the three APIs

    def _native(self, data: Any, headers: Mapping[str, str]) -> SimAnswer:
        if not isinstance(data, dict):
            return self.error(400, "PARAM_ERROR", "body is not an object")
        amount = data.get("amount")
        total = amount.get("total") if isinstance(amount, dict) else None
        required = ("appid", "mchid", "description", "out_trade_no", "notify_url")
        missing = [name for name in required if not isinstance(data.get(name), str)]
        if missing:
            return self.error(400, "PARAM_ERROR", f"missing {', '.join(missing)}")
        if not isinstance(total, int) or isinstance(total, bool) or total <= 0:
            return self.error(400, "PARAM_ERROR", "amount.total is not a positive integer")
        if not 1 <= len(data["description"].encode()) <= DESCRIPTION_MAX_BYTES:
            return self.error(400, "PARAM_ERROR", "description is not 1-127 bytes")
        if isinstance(amount, dict) and amount.get("currency", "CNY") != "CNY":
            return self.error(400, "PARAM_ERROR", "amount.currency is not CNY")
        if data["mchid"] != self.mchid:
            return self.error(400, "MCH_NOT_EXISTS", "mchid does not exist")
        if data["appid"] != self.appid:
            return self.error(400, "APPID_MCHID_NOT_MATCH", "appid and mchid do not match")
        no = data["out_trade_no"]
        if not OUT_TRADE_NO.match(no):
            return self.error(400, "PARAM_ERROR", "out_trade_no is not 6-32 of [0-9A-Za-z_-|*]")
        if not data["notify_url"].startswith(("https://", "http://")):
            return self.error(400, "PARAM_ERROR", "notify_url is not a URL")
        time_expire = None
        if "time_expire" in data:
            if not isinstance(data["time_expire"], str) or not TIME_EXPIRE.match(
                data["time_expire"]
            ):
                return self.error(400, "PARAM_ERROR", "time_expire is not RFC 3339")
            time_expire = datetime.fromisoformat(data["time_expire"])
        with self._lock:
            trade = self.trades.get(no)
            if trade is not None:
                if trade.state == "SUCCESS":
                    return self.error(400, "ORDERPAID", "该订单已支付")
                if trade.state == "CLOSED":
                    return self.error(400, "ORDER_CLOSED", "订单已关闭")
                if trade.amount_fen != total or trade.description != data["description"]:
                    return self.error(
                        400, "INVALID_REQUEST", "参数与首次请求时不一致 (out_trade_no reused)"
                    )
            else:
                self.trades[no] = Trade(
                    no, total, data["description"], data["notify_url"], time_expire
                )
        base = self.base_url or f"http://{headers.get('host', '127.0.0.1')}"
        return self.signed(200, {"code_url": f"{base}/sandbox/pay/{no}"})

    def _query(self, no: str, mchid: str | None) -> SimAnswer:
        if mchid != self.mchid:
            return self.error(400, "MCH_NOT_EXISTS", "mchid does not exist")
        with self._lock:
            trade = self.trades.get(no)
            if trade is None:
                return self.error(404, "ORDER_NOT_EXIST", "订单不存在")
            return self.signed(200, self.transaction(trade))

    def _close(self, no: str, data: Any) -> SimAnswer:
        if not isinstance(data, dict) or data.get("mchid") != self.mchid:
            return self.error(400, "MCH_NOT_EXISTS", "mchid does not exist")
        with self._lock:
            trade = self.trades.get(no)
            if trade is None:
                return self.error(404, "ORDER_NOT_EXIST", "订单不存在")
            if trade.state == "SUCCESS":
                return self.error(400, "ORDERPAID", "订单已支付")
            trade.state = "CLOSED"
        return self.signed(204)

    def transaction(self, trade: Trade, **changes: Any) -> dict[str, Any]:
        """The trade as the query API and notifications describe it. As WeChat Pay does, an
        unpaid trade's amount has no `currency` (only `payer_currency`) and no transaction_id."""
        tx: dict[str, Any] = {
            "appid": self.appid,
            "mchid": self.mchid,
            "out_trade_no": trade.out_trade_no,
            "trade_type": "NATIVE",
            "trade_state": trade.state,
            "trade_state_desc": _STATE_DESC[trade.state],
            "attach": "",
            "amount": {"total": trade.amount_fen, "payer_currency": "CNY"},
        }
        if trade.transaction_id is not None:
            tx["transaction_id"] = trade.transaction_id
            tx["bank_type"] = "OTHERS"
            tx["payer"] = {"openid": trade.openid}
            tx["amount"].update(currency="CNY", payer_total=trade.amount_fen)
        if trade.success_time is not None:
            tx["success_time"] = _rfc3339(trade.success_time)
        tx.update(changes)
        return tx

    # ------------------------------------------------------------ paying and notifying

    def pay(self, out_trade_no: str) -> Notification:
        """The trade paid now; its TRANSACTION.SUCCESS notification, to `deliver()`."""
        with self._lock:
            trade = self.trades.get(out_trade_no)
            if trade is None:
                raise TradeNotPayable(f"no trade {out_trade_no}")
            if trade.state != "NOTPAY":
                raise TradeNotPayable(f"trade {out_trade_no} is {trade.state}")
            now = datetime.fromtimestamp(self.clock(), timezone.utc)
            if trade.time_expire is not None and now > trade.time_expire:
                raise TradeNotPayable(f"trade {out_trade_no} expired")
            trade.state = "SUCCESS"
            trade.transaction_id = "4200" + _digits(24)
            trade.success_time = now.replace(microsecond=0)
        return self.notification(out_trade_no)

    def notification(
        self,
        out_trade_no: str,
        *,
        event_type: str = "TRANSACTION.SUCCESS",
        trade_state: str = "SUCCESS",
        amount_fen: int | None = None,
        mchid: str | None = None,
        appid: str | None = None,
        timestamp: int | None = None,
        signing_key: rsa.RSAPrivateKey | None = None,
        serial: str | None = None,
        apiv3_key: str | None = None,
        fields: Mapping[str, Any] | None = None,
    ) -> Notification:
        """A notification of the trade (a made-up paid one when the simulator does not know
        it), with any of its parts replaced: what it says (`event_type`, `trade_state`,
        `amount_fen`, `mchid`, `appid`, and any of the transaction's `fields`, for values
        WeChat Pay never sends), when it is signed (`timestamp`), and the keys: a
        `signing_key` other than the platform's, a `serial` other than `public_key_id`, an
        `apiv3_key` other than the merchant's."""
        with self._lock:
            known = self.trades.get(out_trade_no)
            trade = Trade(**vars(known)) if known else Trade(out_trade_no, 1, "", "", None)
        if trade.transaction_id is None and trade_state == "SUCCESS":
            trade.transaction_id = "4200" + _digits(24)
            trade.success_time = datetime.fromtimestamp(int(self.clock()), timezone.utc)
        trade.state = "SUCCESS" if trade_state == "SUCCESS" else "NOTPAY"
        changes: dict[str, Any] = {
            "trade_state": trade_state,
            "trade_state_desc": _STATE_DESC.get(trade_state, trade_state),
            "mchid": mchid or self.mchid,
            "appid": appid or self.appid,
        }
        tx = self.transaction(trade, **changes)
        if amount_fen is not None:
            tx["amount"].update(total=amount_fen)
            if "payer_total" in tx["amount"]:
                tx["amount"]["payer_total"] = amount_fen
        tx.update(fields or {})
        resource = encrypt_resource(apiv3_key or self.apiv3_key, _json_text(tx), "transaction")
        summary = "支付成功" if event_type == "TRANSACTION.SUCCESS" else event_type
        event = self._event(event_type, summary, resource)
        headers = self.signature_headers(event, timestamp=timestamp, key=signing_key, serial=serial)
        headers["Content-Type"] = JSON_TYPE
        return Notification(out_trade_no, headers, event)

    def refund_notification(
        self,
        out_trade_no: str,
        *,
        refund_status: str = "SUCCESS",
        refund_fen: int | None = None,
        fields: Mapping[str, Any] | None = None,
    ) -> Notification:
        """The notification of a refund of the trade (in full unless `refund_fen`), as WeChat
        Pay sends it to the notify_url the refund named (one made at the merchant platform
        may name the payments' one): event REFUND.<refund_status> (SUCCESS, ABNORMAL or
        CLOSED), its resource a refund, which carries the mchid and no appid; any of its
        `fields` replaced. Nothing here refunds the trade itself."""
        with self._lock:
            known = self.trades.get(out_trade_no)
            total = known.amount_fen if known else 1
            transaction_id = known.transaction_id if known else None
        refund = total if refund_fen is None else refund_fen
        resource: dict[str, Any] = {
            "mchid": self.mchid,
            "out_trade_no": out_trade_no,
            "transaction_id": transaction_id or "4200" + _digits(24),
            "out_refund_no": "RF" + secrets.token_hex(8),
            "refund_id": "50" + _digits(27),
            "refund_status": refund_status,
            "user_received_account": "支付用户零钱",
            "amount": {
                "total": total,
                "refund": refund,
                "payer_total": total,
                "payer_refund": refund,
            },
        }
        if refund_status == "SUCCESS":
            now = datetime.fromtimestamp(int(self.clock()), timezone.utc)
            resource["success_time"] = _rfc3339(now)
        resource.update(fields or {})
        sealed = encrypt_resource(self.apiv3_key, _json_text(resource), "refund", "refund")
        summary = _REFUND_SUMMARY.get(refund_status, refund_status)
        event = self._event(f"REFUND.{refund_status}", summary, sealed)
        headers = self.signature_headers(event)
        headers["Content-Type"] = JSON_TYPE
        return Notification(out_trade_no, headers, event)

    def _event(self, event_type: str, summary: str, resource: dict[str, str]) -> bytes:
        """A notification's body: the event around its encrypted resource."""
        now = datetime.fromtimestamp(int(self.clock()), timezone.utc)
        event = {
            "id": "EV-" + secrets.token_hex(16),
            "create_time": _rfc3339(now),
            "resource_type": "encrypt-resource",
            "event_type": event_type,
            "summary": summary,
            "resource": resource,
        }
        return json.dumps(event, ensure_ascii=False).encode()

    def deliver(self, notification: Notification, url: str | None = None) -> int:
        """POST the notification to `url` (default: its trade's notify_url); the HTTP status
        of the answer. A refused connection or a timeout raises OSError."""
        if url is None:
            with self._lock:
                trade = self.trades.get(notification.out_trade_no)
            if trade is None:
                raise ValueError(f"no trade {notification.out_trade_no} to take notify_url from")
            url = trade.notify_url
        request = urllib.request.Request(  # noqa: S310 - the notify_url the merchant gave
            url, data=notification.body, headers=notification.headers, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=DELIVER_TIMEOUT_S) as answer:  # noqa: S310
                return int(answer.status)
        except urllib.error.HTTPError as refused:
            return int(refused.code)

    # ------------------------------------------------------------ the sandbox pay page

    def _pay_page(self, method: str, no: str) -> SimAnswer:
        with self._lock:
            trade = self.trades.get(no)
            state = trade.state if trade else None
        if trade is None:
            return _page(404, "No such trade", "<p>WeChat Pay does not know this trade.</p>")
        if method == "GET":
            return _page(200, "WeChat Pay sandbox", _trade_summary(trade) + _pay_form(no, state))
        if method != "POST":
            return _page(405, "Method not allowed", "")
        try:
            notification = self.pay(no)
        except TradeNotPayable as refused:
            return _page(409, "Not paid", f"<p>{html.escape(str(refused))}.</p>")
        try:
            status = self.deliver(notification)
            outcome = f"The merchant answered the notification with HTTP {status}."
        except (OSError, ValueError) as failed:
            outcome = f"The notification could not be delivered ({type(failed).__name__})."
        body = _trade_summary(trade) + f"<p>Paid.</p><p>{html.escape(outcome)}</p>"
        return _page(200, "Paid", body)


def _digits(count: int) -> str:
    return "".join(secrets.choice("0123456789") for _ in range(count))


def _json_text(value: Any) -> str:
    """JSON as WeChat Pay writes it (UTF-8, not escaped); text UTF-8 cannot carry (a lone
    surrogate a test puts in) escaped as `\\udXXX`, as any JSON writer may."""
    text = json.dumps(value, ensure_ascii=False)
    try:
        text.encode()
    except UnicodeEncodeError:
        return json.dumps(value)
    return text


def _trade_summary(trade: Trade) -> str:
    yuan = f"{trade.amount_fen // 100}.{trade.amount_fen % 100:02d}"
    return (
        f"<p>Order <code>{html.escape(trade.out_trade_no)}</code>: "
        f"{html.escape(trade.description)}</p><p>Amount: ¥{yuan}</p>"
    )


def _pay_form(no: str, state: str | None) -> str:
    if state != "NOTPAY":
        return f"<p>This trade is {html.escape(str(state))}.</p>"
    return (
        f'<form method="post" action="/sandbox/pay/{html.escape(no)}">'
        '<button type="submit">Pay</button></form>'
    )


def _page(status: int, title: str, body: str) -> SimAnswer:
    text = (
        f'<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"</head><body><h1>{html.escape(title)}</h1>{body}</body></html>"
    )
    return SimAnswer(status, {"Content-Type": "text/html; charset=utf-8"}, text.encode())
