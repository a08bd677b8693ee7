"""The WeChat Pay adapter through the real wechatpayv3 code against the fake WeChat Pay (the
simulator on a local HTTP server, which refuses requests our merchant key did not sign and
signs its answers with the platform key): Native orders, query, close, an unreachable
provider, notifications genuine and forged, a PKCS#1 merchant key, and no key material in
any exception or log line."""

from __future__ import annotations

import functools
import json
import logging
import threading
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.request import Request, urlopen

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from app.config import get_settings
from app.payments import wechatpay
from app.payments.gateway import Charge, ProviderError, Rejected
from infra.local.sandbox.wechatpay import Notification
from tests.fakes.server import LocalServer
from tests.fakes.wechatpay import FakeWechatPay
from tests.support.logs import capture_logs
from tests.support.net import closed_port
from tests.support.settings import settings_env

NOTIFY_URL = "https://api.example.com/payments/wechat/notify"
EXPIRES_AT = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(minutes=30)
CHINA = timezone(timedelta(hours=8))


def charge(
    order_id: str = "ord_A1b2C3d4E5f6", amount_fen: int = 990, expires_at: datetime = EXPIRES_AT
) -> Charge:
    return Charge(order_id, amount_fen, "Pro plan, 30 days", expires_at)


def adapter(env: dict[str, str], **kwargs: Any) -> wechatpay.WechatPay:
    with settings_env(**env):
        return wechatpay.from_settings(get_settings(), **kwargs)


@pytest.fixture(scope="module")
def server() -> Iterator[FakeWechatPay]:
    with FakeWechatPay() as fake:
        yield fake


@pytest.fixture
def fake(server: FakeWechatPay) -> FakeWechatPay:
    server.reset()
    return server


@pytest.fixture
def pay(fake: FakeWechatPay) -> wechatpay.WechatPay:
    return adapter(fake.settings(NOTIFY_URL))


def lower(notification: Notification) -> dict[str, str]:
    return notification.lower_headers


# ------------------------------------------------------------ create


def test_create_signs_a_native_order_and_returns_its_code_url(
    fake: FakeWechatPay, pay: wechatpay.WechatPay
) -> None:
    code_url = pay.create(charge(expires_at=datetime(2036, 12, 5, 12, 0, tzinfo=timezone.utc)))

    assert code_url == f"{fake.base_url}/sandbox/pay/ord_A1b2C3d4E5f6"
    [request] = fake.requests
    assert (request.method, request.path) == ("POST", "/v3/pay/transactions/native")
    assert request.authorized
    assert request.headers["authorization"].startswith("WECHATPAY2-SHA256-RSA2048 ")
    assert f'serial_no="{fake.sim.cert_serial}"' in request.headers["authorization"]
    assert request.headers["wechatpay-serial"] == fake.sim.public_key_id
    assert request.json == {
        "notify_url": NOTIFY_URL,
        "description": "Pro plan, 30 days",
        "out_trade_no": "ord_A1b2C3d4E5f6",
        "amount": {"total": 990, "currency": "CNY"},
        "time_expire": "2036-12-05T20:00:00+08:00",
        "appid": fake.sim.appid,
        "mchid": fake.sim.mchid,
    }
    trade = fake.sim.trades["ord_A1b2C3d4E5f6"]
    assert (trade.amount_fen, trade.state) == (990, "NOTPAY")
    assert trade.time_expire == datetime(2036, 12, 5, 12, 0, tzinfo=timezone.utc)


def test_a_long_description_is_cut_to_127_bytes_at_a_characters_edge(
    fake: FakeWechatPay, pay: wechatpay.WechatPay
) -> None:
    name = "会员" * 50  # a plan name of 100 characters, 300 bytes
    order = charge()
    pay.create(Charge(order.order_id, order.amount_fen, name, order.expires_at))
    sent = fake.requests[0].json["description"]
    assert len(sent.encode()) <= 127 and name.startswith(sent) and len(sent) == 42


def test_a_request_the_merchant_key_did_not_sign_is_refused(fake: FakeWechatPay) -> None:
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = other.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    impostor = adapter({**fake.settings(NOTIFY_URL), "WECHATPAY_PRIVATE_KEY": pem})

    with pytest.raises(ProviderError, match="HTTP 401 SIGN_ERROR"):
        impostor.create(charge())
    assert not fake.requests[0].authorized
    assert fake.sim.trades == {}


def test_a_pkcs1_merchant_key_is_converted_and_works(fake: FakeWechatPay) -> None:
    env = fake.settings(NOTIFY_URL, key_format="pkcs1")
    assert env["WECHATPAY_PRIVATE_KEY"].startswith("-----BEGIN RSA PRIVATE KEY-----")

    assert adapter(env).create(charge()).endswith("/sandbox/pay/ord_A1b2C3d4E5f6")
    assert fake.requests[0].authorized


def test_creating_the_same_order_again_gives_the_same_code_url(
    pay: wechatpay.WechatPay,
) -> None:
    assert pay.create(charge()) == pay.create(charge())


@pytest.mark.parametrize(
    ("status", "payload", "expected"),
    [
        (500, {"code": "SYSTEM_ERROR", "message": "系统错误"}, "HTTP 500 SYSTEM_ERROR"),
        (400, {"code": "PARAM_ERROR", "message": "bad"}, "HTTP 400 PARAM_ERROR"),
        (200, {"prepay_id": "wx0"}, "HTTP 200 without a usable body"),
        (200, {"code_url": ""}, "HTTP 200 without a usable body"),
    ],
)
def test_create_fails_on_an_error_or_an_answer_without_code_url(
    fake: FakeWechatPay, pay: wechatpay.WechatPay, status: int, payload: Any, expected: str
) -> None:
    fake.answer_next(status, payload)
    with pytest.raises(ProviderError, match=expected):
        pay.create(charge())


@pytest.mark.parametrize(
    "code",
    [
        "A" * 100_000,
        'SYSTEM_ERROR\n{"level": "info", "message": "paid"}',
        "system_error",
        "",
        500,
        ["SYSTEM_ERROR"],
    ],
    ids=["huge", "newline", "lower-case", "empty", "number", "list"],
)
def test_an_error_code_not_of_wechat_pays_shape_is_named_unreadable(
    fake: FakeWechatPay, pay: wechatpay.WechatPay, code: Any
) -> None:
    """The code goes into the message that `POST /orders` and the jobs log: from a hostile
    or broken answer, no text of its own and nothing longer than a code gets there."""
    for call in (lambda: pay.create(charge()), lambda: pay.query("ord_A1b2C3d4E5f6")):
        fake.answer_next(500, {"code": code, "message": "m"})
        with pytest.raises(ProviderError) as failed:
            call()
        assert str(failed.value).endswith(": HTTP 500 (unreadable)")
    longest = "E" * 63 + "_"
    fake.answer_next(400, {"code": longest, "message": "m"})
    with pytest.raises(ProviderError) as failed:
        pay.query("ord_A1b2C3d4E5f6")
    assert str(failed.value) == f"WeChat Pay query: HTTP 400 {longest}"


def test_an_answer_the_platform_did_not_sign_is_a_provider_error(
    fake: FakeWechatPay, pay: wechatpay.WechatPay
) -> None:
    fake.answer_next(200, {"code_url": "weixin://wxpay/bizpayurl?pr=forged"}, key=fake.other_key)
    with pytest.raises(ProviderError, match="signature does not verify"):
        pay.create(charge())
    fake.answer_next(200, {"code_url": "weixin://wxpay/bizpayurl?pr=forged"}, signed=False)
    with pytest.raises(ProviderError, match="signature does not verify"):
        pay.create(charge())


# ------------------------------------------------------------ query


def test_query_of_an_unpaid_trade(pay: wechatpay.WechatPay) -> None:
    pay.create(charge())
    report = pay.query("ord_A1b2C3d4E5f6")
    assert (report.order_id, report.state, report.amount_fen) == ("ord_A1b2C3d4E5f6", "unpaid", 990)
    assert (report.currency, report.provider_trade_id, report.paid_at) == ("CNY", None, None)


def test_query_of_a_paid_trade(fake: FakeWechatPay, pay: wechatpay.WechatPay) -> None:
    pay.create(charge())
    fake.pay("ord_A1b2C3d4E5f6")
    trade = fake.sim.trades["ord_A1b2C3d4E5f6"]

    report = pay.query("ord_A1b2C3d4E5f6")

    assert (report.state, report.amount_fen, report.currency) == ("paid", 990, "CNY")
    assert report.provider_trade_id == trade.transaction_id
    assert report.paid_at == trade.success_time
    assert report.paid_at is not None and report.paid_at.utcoffset() == timedelta(0)
    request = fake.requests[-1]
    assert request.method == "GET" and request.authorized
    assert request.path == f"/v3/pay/transactions/out-trade-no/ord_A1b2C3d4E5f6?mchid={pay.mchid}"


def test_query_of_a_closed_trade(pay: wechatpay.WechatPay) -> None:
    pay.create(charge())
    pay.close("ord_A1b2C3d4E5f6")
    assert pay.query("ord_A1b2C3d4E5f6").state == "closed"


def test_query_of_a_trade_wechat_pay_does_not_know_is_unpaid(
    fake: FakeWechatPay, pay: wechatpay.WechatPay
) -> None:
    report = pay.query("ord_Unknown0001")
    assert (report.state, report.amount_fen, report.provider_trade_id) == ("unpaid", None, None)
    assert fake.requests[0].authorized


@pytest.mark.parametrize(
    ("trade_state", "state"),
    [
        ("USERPAYING", "unpaid"),
        ("NOTPAY", "unpaid"),
        ("REVOKED", "closed"),
        ("PAYERROR", "closed"),
        ("CLOSED", "closed"),
        ("REFUND", "refunded"),
        ("SUCCESS", "paid"),
    ],
)
def test_query_maps_every_trade_state(
    fake: FakeWechatPay, pay: wechatpay.WechatPay, trade_state: str, state: str
) -> None:
    pay.create(charge())
    trade = fake.sim.trades["ord_A1b2C3d4E5f6"]
    fake.answer_next(200, fake.sim.transaction(trade, trade_state=trade_state))
    assert pay.query("ord_A1b2C3d4E5f6").state == state


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"mchid": "1900009999"}, "another mchid"),
        ({"appid": "wx0000000000000000"}, "another appid"),
        ({"trade_state": "WHATEVER"}, "unknown trade_state"),
        ({"out_trade_no": "ord_Someone0else"}, "another out_trade_no"),
        ({"amount": {"total": "990"}}, "amount.total"),
        ({"amount": {"total": 990, "currency": "人民币"}}, "currency"),
        ({"trade_state": "SUCCESS", "success_time": "yesterday"}, "success_time"),
        # times Python reads that have no UTC (before year 1, after year 9999)
        ({"trade_state": "SUCCESS", "success_time": "0001-01-01T00:00:00+08:00"}, "success_time"),
        ({"trade_state": "SUCCESS", "success_time": "9999-12-31T23:59:59-08:00"}, "success_time"),
    ],
)
def test_a_query_answer_that_is_not_ours_or_not_usable_is_a_provider_error(
    fake: FakeWechatPay, pay: wechatpay.WechatPay, change: dict[str, Any], expected: str
) -> None:
    pay.create(charge())
    trade = fake.sim.trades["ord_A1b2C3d4E5f6"]
    fake.answer_next(200, fake.sim.transaction(trade, **change))
    with pytest.raises(ProviderError, match=expected):
        pay.query("ord_A1b2C3d4E5f6")


def test_a_query_answer_nested_too_deep_is_a_provider_error(
    fake: FakeWechatPay, pay: wechatpay.WechatPay
) -> None:
    pay.create(charge())
    fake.answer_next_body(200, DEEP)
    with pytest.raises(ProviderError, match="without a usable body"):
        pay.query("ord_A1b2C3d4E5f6")


# ------------------------------------------------------------ close


def test_close_closes_the_trade(fake: FakeWechatPay, pay: wechatpay.WechatPay) -> None:
    pay.create(charge())
    pay.close("ord_A1b2C3d4E5f6")

    assert fake.sim.trades["ord_A1b2C3d4E5f6"].state == "CLOSED"
    request = fake.requests[-1]
    assert request.path == "/v3/pay/transactions/out-trade-no/ord_A1b2C3d4E5f6/close"
    assert request.json == {"mchid": pay.mchid} and request.authorized
    pay.close("ord_A1b2C3d4E5f6")  # already closed: still fine


def test_closing_a_trade_wechat_pay_does_not_know_succeeds(
    fake: FakeWechatPay, pay: wechatpay.WechatPay
) -> None:
    pay.close("ord_Unknown0001")
    assert fake.requests[0].authorized


def test_closing_a_paid_trade_is_a_provider_error(
    fake: FakeWechatPay, pay: wechatpay.WechatPay
) -> None:
    pay.create(charge())
    fake.pay("ord_A1b2C3d4E5f6")
    with pytest.raises(ProviderError, match="ORDERPAID"):
        pay.close("ord_A1b2C3d4E5f6")
    assert fake.sim.trades["ord_A1b2C3d4E5f6"].state == "SUCCESS"


# ------------------------------------------------------------ the provider down


@pytest.mark.parametrize(("how", "expected"), [("503", "HTTP 503"), ("reset", "connection failed")])
def test_provider_down_is_a_provider_error_for_every_call(
    fake: FakeWechatPay, pay: wechatpay.WechatPay, how: Any, expected: str
) -> None:
    fake.down(how)
    calls: list[Callable[[], Any]] = [
        lambda: pay.create(charge()),
        lambda: pay.query("ord_A1b2C3d4E5f6"),
        lambda: pay.close("ord_A1b2C3d4E5f6"),
    ]
    for call in calls:
        with pytest.raises(ProviderError, match=expected):
            call()
    fake.up()
    assert pay.create(charge()).endswith("/sandbox/pay/ord_A1b2C3d4E5f6")


def test_a_refused_connection_is_a_provider_error(fake: FakeWechatPay) -> None:
    env = {**fake.settings(NOTIFY_URL), "WECHATPAY_API_BASE": f"http://127.0.0.1:{closed_port()}"}
    with pytest.raises(ProviderError, match="create: connection failed"):
        adapter(env).create(charge())


@pytest.mark.slow
def test_a_provider_that_does_not_answer_times_out_after_5_seconds(
    fake: FakeWechatPay, pay: wechatpay.WechatPay
) -> None:
    fake.down("stall")
    started = datetime.now(timezone.utc)
    with pytest.raises(ProviderError, match="query: no answer within 5 s"):
        pay.query("ord_A1b2C3d4E5f6")
    assert timedelta(seconds=4.5) < datetime.now(timezone.utc) - started < timedelta(seconds=6.5)


# ------------------------------------------------------------ settings


def test_settings_that_are_missing_or_do_not_load_are_named_without_values(
    fake: FakeWechatPay,
) -> None:
    env = fake.settings(NOTIFY_URL)
    with pytest.raises(ProviderError, match="WECHATPAY_APIV3_KEY, WECHATPAY_PUBLIC_KEY_ID unset"):
        adapter({**env, "WECHATPAY_APIV3_KEY": "", "WECHATPAY_PUBLIC_KEY_ID": ""})
    with pytest.raises(ProviderError, match="WECHATPAY_APIV3_KEY is not 32 bytes"):
        adapter({**env, "WECHATPAY_APIV3_KEY": env["WECHATPAY_APIV3_KEY"][:31]})
    broken = env["WECHATPAY_PRIVATE_KEY"].replace("\n", "\n!", 3)
    with pytest.raises(ProviderError, match="WECHATPAY_PRIVATE_KEY is not an unencrypted PEM key"):
        adapter({**env, "WECHATPAY_PRIVATE_KEY": broken})
    with pytest.raises(ProviderError, match="WECHATPAY_PUBLIC_KEY does not load"):
        adapter({**env, "WECHATPAY_PUBLIC_KEY": "-----BEGIN PUBLIC KEY-----\nAAAA\n"})


def test_the_default_api_base_is_wechat_pays(fake: FakeWechatPay) -> None:
    env = {**fake.settings(NOTIFY_URL), "WECHATPAY_API_BASE": ""}
    assert adapter(env).api_base == "https://api.mch.weixin.qq.com"


# ------------------------------------------------------------ notifications


def test_a_genuine_notification_reports_the_payment(
    fake: FakeWechatPay, pay: wechatpay.WechatPay
) -> None:
    pay.create(charge())
    notification = fake.pay("ord_A1b2C3d4E5f6")
    trade = fake.sim.trades["ord_A1b2C3d4E5f6"]

    report = pay.verify(lower(notification), notification.body)

    assert (report.order_id, report.state, report.amount_fen) == ("ord_A1b2C3d4E5f6", "paid", 990)
    assert report.currency == "CNY"
    assert report.provider_trade_id == trade.transaction_id
    assert report.paid_at == trade.success_time
    assert len(fake.requests) == 1  # the create: verifying calls nobody


# RFC 3339 times as WeChat Pay's standard allows them, and the moment each is: a Z (either
# case) for UTC, a fraction of any length. Python 3.10, the runtime's, reads none of these
# with fromisoformat, and a genuine payment refused for its time would be refused for good.
PAID_AT = datetime(2026, 12, 5, 12, 0, 0, tzinfo=timezone.utc)
RFC3339_TIMES = {
    "2026-12-05T12:00:00Z": PAID_AT,
    "2026-12-05T12:00:00.5z": PAID_AT + timedelta(milliseconds=500),
    "2026-12-05t20:00:00.123456789+08:00": PAID_AT + timedelta(microseconds=123456),
    "2026-12-05T04:00:00.25-08:00": PAID_AT + timedelta(milliseconds=250),
}


@pytest.mark.parametrize("success_time", list(RFC3339_TIMES))
def test_a_payment_is_dated_by_any_rfc_3339_success_time(
    fake: FakeWechatPay, pay: wechatpay.WechatPay, success_time: str
) -> None:
    pay.create(charge())
    fake.pay("ord_A1b2C3d4E5f6")
    notification = fake.sim.notification("ord_A1b2C3d4E5f6", fields={"success_time": success_time})
    assert pay.verify(lower(notification), notification.body).paid_at == RFC3339_TIMES[success_time]

    trade = fake.sim.trades["ord_A1b2C3d4E5f6"]
    fake.answer_next(200, fake.sim.transaction(trade, success_time=success_time))
    assert pay.query("ord_A1b2C3d4E5f6").paid_at == RFC3339_TIMES[success_time]


# Nested past the parser's recursion limit (a RecursionError, not a ValueError, from
# json.loads); well under the HTTP edge's 1 MiB, so it reaches the adapter.
DEEP = b"[" * 200_000 + b"]" * 200_000
DEEP_EVENT = b'{"resource_type": "encrypt-resource", "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"

FORGED: list[tuple[str, Callable[[FakeWechatPay], Notification], int, str]] = [
    ("tampered body", lambda f: f.tampered("ord_A1b2C3d4E5f6"), 401, "does not verify"),
    ("other key", lambda f: f.signed_with_other_key("ord_A1b2C3d4E5f6"), 401, "does not verify"),
    ("other APIv3 key", lambda f: f.other_apiv3_key("ord_A1b2C3d4E5f6"), 401, "does not verify"),
    ("unknown serial", lambda f: f.unknown_serial("ord_A1b2C3d4E5f6"), 401, "serial"),
    ("6 min late", lambda f: f.timestamp_off("ord_A1b2C3d4E5f6", -360), 400, "5 minutes"),
    ("6 min early", lambda f: f.timestamp_off("ord_A1b2C3d4E5f6", 360), 400, "5 minutes"),
    ("other mchid", lambda f: f.other_mchid("ord_A1b2C3d4E5f6"), 400, "another mchid"),
    ("other appid", lambda f: f.other_appid("ord_A1b2C3d4E5f6"), 400, "another appid"),
    ("not JSON", lambda f: f.signed_body(b"paid, honest"), 400, "not an encrypted"),
    ("not an event", lambda f: f.signed_body(b'{"resource": 1}'), 400, "not an encrypted"),
    ("nested too deep", lambda f: f.signed_body(DEEP), 400, "not an encrypted"),
    ("an event nested too deep", lambda f: f.signed_body(DEEP_EVENT), 400, "not an encrypted"),
    (
        "paid, not TRANSACTION.SUCCESS",
        lambda f: f.sim.notification("ord_A1b2C3d4E5f6", event_type="TRANSACTION.CLOSED"),
        400,
        "not a TRANSACTION.SUCCESS",
    ),
    (
        "a refund event holding a transaction",
        lambda f: f.sim.notification("ord_A1b2C3d4E5f6", event_type="REFUND.SUCCESS"),
        400,
        "unknown refund_status",
    ),
    (
        # Signed as any event: an event_type of no event's shape is none of ours.
        "an event_type that is a list",
        lambda f: f.sim.notification("ord_A1b2C3d4E5f6", event_type=["TRANSACTION.SUCCESS"]),
        400,
        "not a TRANSACTION.SUCCESS",
    ),
    (
        "a refund of another mchid",
        lambda f: f.sim.refund_notification("ord_A1b2C3d4E5f6", fields={"mchid": "1900009999"}),
        400,
        "another mchid",
    ),
]


@pytest.mark.parametrize(
    ("build", "status", "reason"),
    [pytest.param(build, status, reason, id=name) for name, build, status, reason in FORGED],
)
def test_a_forged_or_foreign_notification_is_rejected(
    fake: FakeWechatPay,
    pay: wechatpay.WechatPay,
    build: Callable[[FakeWechatPay], Notification],
    status: int,
    reason: str,
) -> None:
    pay.create(charge())
    notification = build(fake)

    with pytest.raises(Rejected, match=reason) as rejected:
        pay.verify(lower(notification), notification.body)

    assert rejected.value.status == status
    assert len(fake.requests) == 1  # nothing, not even a certificate download, was asked


@pytest.mark.parametrize(
    "header",
    [
        "wechatpay-signature",
        "wechatpay-timestamp",
        "wechatpay-nonce",
        "wechatpay-serial",
        "wechatpay-signature-type",
    ],
)
def test_a_notification_without_a_signature_header_is_rejected(
    fake: FakeWechatPay, pay: wechatpay.WechatPay, header: str
) -> None:
    pay.create(charge())
    notification = fake.pay("ord_A1b2C3d4E5f6")
    headers = {k: v for k, v in lower(notification).items() if k != header}
    with pytest.raises(Rejected) as rejected:
        pay.verify(headers, notification.body)
    assert rejected.value.status == 401


def test_the_timestamp_window_is_five_minutes_either_way(fake: FakeWechatPay) -> None:
    signed_at = 1_790_000_000
    notification = fake.sim.notification("ord_A1b2C3d4E5f6", timestamp=signed_at)
    for now, accepted in [
        (signed_at + 300, True),
        (signed_at - 300, True),
        (signed_at + 301, False),
        (signed_at - 301, False),
    ]:
        pinned = adapter(fake.settings(NOTIFY_URL), clock=lambda now=now: now)
        if accepted:
            assert pinned.verify(lower(notification), notification.body).state == "paid"
        else:
            with pytest.raises(Rejected, match="5 minutes") as rejected:
                pinned.verify(lower(notification), notification.body)
            assert rejected.value.status == 400


def test_a_notification_of_another_amount_or_an_unknown_order_verifies_as_sent(
    fake: FakeWechatPay, pay: wechatpay.WechatPay
) -> None:
    # The stored order is the caller's to check: the adapter reports what was signed.
    pay.create(charge())
    notification = fake.other_amount("ord_A1b2C3d4E5f6", 1)
    assert pay.verify(lower(notification), notification.body).amount_fen == 1

    notification = fake.unknown_order("ord_NoSuchOrder1")
    report = pay.verify(lower(notification), notification.body)
    assert (report.order_id, report.state) == ("ord_NoSuchOrder1", "paid")


@pytest.mark.parametrize(
    ("trade_state", "state"), [("NOTPAY", "unpaid"), ("CLOSED", "closed"), ("REFUND", "refunded")]
)
def test_a_notification_of_a_trade_not_paid_reports_its_state(
    fake: FakeWechatPay, pay: wechatpay.WechatPay, trade_state: str, state: str
) -> None:
    pay.create(charge())
    notification = fake.sim.notification(
        "ord_A1b2C3d4E5f6", event_type="TRANSACTION.CLOSED", trade_state=trade_state
    )
    report = pay.verify(lower(notification), notification.body)
    assert (report.state, report.paid_at) == (state, None)


# ------------------------------------------------------------ the sandbox pay page


class NotifyReceiver(LocalServer):
    """Our notify endpoint in miniature: verifies what arrives with the adapter."""

    pay: wechatpay.WechatPay  # set once the port, hence the notify_url, is known

    def __init__(self) -> None:
        self.outcomes: list[Any] = []
        self._lock = threading.Lock()

    def handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class _Handler(BaseHTTPRequestHandler):
            def log_message(self, *_args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                headers = {k.lower(): v for k, v in self.headers.items()}
                try:
                    outcome: Any = receiver.pay.verify(headers, body)
                    status = 200
                except Rejected as rejected:
                    outcome, status = rejected, rejected.status
                with receiver._lock:
                    receiver.outcomes.append(outcome)
                answer = json.dumps({"code": "SUCCESS" if status == 200 else "FAIL"}).encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

        return _Handler


def test_the_pay_page_pays_and_delivers_a_notification_our_adapter_accepts(
    fake: FakeWechatPay,
) -> None:
    with NotifyReceiver() as receiver:
        pay = adapter(fake.settings(f"http://127.0.0.1:{receiver.port}/payments/wechat/notify"))
        receiver.pay = pay
        code_url = pay.create(charge())

        with urlopen(code_url, timeout=5) as page:
            text = page.read().decode()
        assert "¥9.90" in text and "Pro plan, 30 days" in text and "<button" in text

        with urlopen(Request(code_url, data=b"", method="POST"), timeout=5) as page:
            text = page.read().decode()
        assert "HTTP 200" in text

    [report] = receiver.outcomes
    assert (report.order_id, report.state, report.amount_fen) == ("ord_A1b2C3d4E5f6", "paid", 990)
    assert pay.query("ord_A1b2C3d4E5f6").state == "paid"


# ------------------------------------------------------------ no key material anywhere


def test_no_key_signature_or_decrypted_resource_reaches_an_exception_or_a_log_line(
    fake: FakeWechatPay,
) -> None:
    env = fake.settings(NOTIFY_URL)
    texts: list[str] = []

    def keep(call: Callable[[], Any]) -> None:
        try:
            call()
        except (Rejected, ProviderError) as exc:
            texts.extend([str(exc), repr(exc), repr(exc.__cause__), repr(exc.__context__)])

    with capture_logs(logging.DEBUG) as logs:
        pay = adapter(env)
        texts.append(repr(pay))
        pay.create(charge())
        genuine = fake.pay("ord_A1b2C3d4E5f6")
        pay.verify(lower(genuine), genuine.body)
        forged = [
            fake.tampered("ord_A1b2C3d4E5f6"),
            fake.other_apiv3_key("ord_A1b2C3d4E5f6"),
            fake.signed_with_other_key("ord_A1b2C3d4E5f6"),
            fake.timestamp_off("ord_A1b2C3d4E5f6", 900),
            fake.other_mchid("ord_A1b2C3d4E5f6"),
        ]
        for notification in forged:
            keep(functools.partial(pay.verify, lower(notification), notification.body))
        fake.answer_next(200, {"code_url": "weixin://x"}, key=fake.other_key)
        keep(lambda: pay.create(charge("ord_Second00001")))
        keep(lambda: pay.close("ord_A1b2C3d4E5f6"))
        for broken in ("WECHATPAY_PRIVATE_KEY", "WECHATPAY_PUBLIC_KEY"):
            keep(functools.partial(adapter, {**env, broken: env[broken][:200]}))
        keep(lambda: adapter({**env, "WECHATPAY_APIV3_KEY": env["WECHATPAY_APIV3_KEY"][:20]}))

    assert len(texts) >= 10
    trade = fake.sim.trades["ord_A1b2C3d4E5f6"]
    private_lines = [line for line in env["WECHATPAY_PRIVATE_KEY"].splitlines() if "-" not in line]
    secrets_ = [
        env["WECHATPAY_APIV3_KEY"],
        env["WECHATPAY_APIV3_KEY"][:20],
        *private_lines,
        trade.openid,  # only inside the encrypted resource
        *(n.headers["Wechatpay-Signature"] for n in [genuine, *forged]),
        *(r.headers["authorization"].split('signature="')[1][:40] for r in fake.requests),
    ]
    haystack = "\n".join([*texts, logs.text])
    for secret in secrets_:
        assert secret not in haystack
