"""The Alipay adapter through python-alipay-sdk's real code against the Alipay simulator on a
real HTTP server: the simulator checks our requests' RSA2 signs, app id and timestamp, and
signs its answers and notifications with its own Alipay key, which the adapter knows only
as ALIPAY_PUBLIC_KEY."""

from __future__ import annotations

import base64
import json
import logging
import time
import traceback
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qsl, quote_plus, urlencode, urlsplit

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from app.config import get_settings
from app.payments.alipay import Alipay, AlipayApp, fen, from_settings, yuan
from app.payments.gateway import Charge, ProviderError, Rejected, Report
from infra.local.sandbox.alipay import (
    AlipaySim,
    Notification,
    new_rsa_key,
    private_pem,
    public_pem,
    rsa2_sign,
    rsa2_verifies,
)
from tests.fakes.alipay import NOTIFY_URL, FakeAlipay, Received
from tests.fakes.server import LocalServer
from tests.support.logs import capture_logs
from tests.support.settings import settings_env

BEIJING = timezone(timedelta(hours=8))
ORDER = "ord-20261205-0001"
FORM = "application/x-www-form-urlencoded"


@pytest.fixture(scope="module")
def served() -> Iterator[FakeAlipay]:
    # One server for the module: stopping one costs half a second (serve_forever's poll).
    with FakeAlipay() as fake:
        yield fake


@pytest.fixture
def fake(served: FakeAlipay) -> FakeAlipay:
    served.reset()
    return served


@pytest.fixture
def gateway(fake: FakeAlipay) -> Iterator[Alipay]:
    with settings_env(**fake.settings(NOTIFY_URL)):
        yield from_settings(get_settings())


def charge(
    order_id: str = ORDER, amount_fen: int = 1990, description: str = "月度会员 Monthly"
) -> Charge:
    expires_at = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(minutes=30)
    return Charge(order_id, amount_fen, description, expires_at)


def params_of(request: Received) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(request.path).query, keep_blank_values=True))


def signed_by(key: rsa.RSAPublicKey, params: dict[str, str]) -> bool:
    """Alipay's check of a request, written out here rather than taken from the simulator:
    RSA2 over the sorted `k=v` pairs of every parameter but `sign`."""
    text = "&".join(f"{k}={v}" for k, v in sorted(params.items()) if k != "sign")
    try:
        signature = base64.b64decode(params["sign"])
        key.verify(signature, text.encode(), padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        return False
    return True


def paid(
    fake: FakeAlipay, gateway: Alipay, order_id: str = ORDER, amount_fen: int = 1990
) -> Notification:
    gateway.create(charge(order_id, amount_fen))
    return fake.sim.pay(order_id)


# ------------------------------------------------------------------ create


def test_create_answers_the_qr_code_of_a_signed_precreate(
    fake: FakeAlipay, gateway: Alipay
) -> None:
    order = charge()
    qr_code = gateway.create(order)

    assert qr_code == f"{fake.base_url}/sandbox/pay/{ORDER}"
    [request] = fake.requests
    assert request.method == "GET"  # the SDK sends everything in the query string
    assert urlsplit(request.path).path == "/gateway.do"
    params = params_of(request)
    assert signed_by(fake.sim.app_public_key, params)
    assert params["method"] == "alipay.trade.precreate"
    assert params["app_id"] == fake.sim.app_id
    assert params["sign_type"] == "RSA2"
    assert params["notify_url"] == NOTIFY_URL
    sent_at = datetime.strptime(params["timestamp"], "%Y-%m-%d %H:%M:%S").replace(tzinfo=BEIJING)
    assert abs(sent_at - datetime.now(timezone.utc)) < timedelta(minutes=1)
    [call] = fake.gateway_calls("alipay.trade.precreate")
    assert call.code == "10000"
    assert call.biz == {
        "out_trade_no": ORDER,
        "total_amount": "19.90",
        "subject": "月度会员 Monthly",
        "time_expire": order.expires_at.astimezone(BEIJING).strftime("%Y-%m-%d %H:%M:%S"),
    }


def test_the_expiry_is_sent_in_beijing_time(fake: FakeAlipay, gateway: Alipay) -> None:
    order = charge()
    gateway.create(order)
    fake.sim.scan(ORDER)
    real_clock = fake.sim.clock
    fake.sim.clock = lambda: order.expires_at - timedelta(seconds=1)
    assert fake.sim.trade(ORDER).status == "WAIT_BUYER_PAY"
    fake.sim.clock = lambda: order.expires_at
    assert fake.sim.trade(ORDER).status == "TRADE_CLOSED"
    fake.sim.clock = real_clock
    assert gateway.query(ORDER).state == "closed"


def test_creating_the_same_charge_again_answers_the_same_code(
    fake: FakeAlipay, gateway: Alipay
) -> None:
    order = charge()
    assert gateway.create(order) == gateway.create(order)
    assert len(fake.sim.trades) == 1


def test_creating_a_paid_trade_again_is_a_provider_error(fake: FakeAlipay, gateway: Alipay) -> None:
    paid(fake, gateway)
    with pytest.raises(ProviderError, match=r"40004 ACQ\.TRADE_HAS_SUCCESS"):
        gateway.create(charge())


def test_one_adapter_serves_many_threads_at_once(fake: FakeAlipay, gateway: Alipay) -> None:
    orders = [f"ord-thread-{n}" for n in range(12)]
    with ThreadPoolExecutor(max_workers=6) as pool:
        codes = list(pool.map(lambda order_id: gateway.create(charge(order_id, 100)), orders))
    assert codes == [f"{fake.base_url}/sandbox/pay/{order_id}" for order_id in orders]
    assert all(signed_by(fake.sim.app_public_key, params_of(r)) for r in fake.requests)
    assert {c.biz["out_trade_no"] for c in fake.gateway_calls(PRECREATE)} == set(orders)


def test_a_request_signed_with_another_key_is_refused(fake: FakeAlipay) -> None:
    with settings_env(**{**fake.settings(), "ALIPAY_PRIVATE_KEY": private_pem(new_rsa_key())}):
        adapter = from_settings(get_settings())
    with pytest.raises(ProviderError, match=r"40002 isv\.invalid-signature"):
        adapter.create(charge())
    assert fake.sim.trades == {}


def test_a_pkcs1_private_key_signs_as_well(fake: FakeAlipay) -> None:
    pkcs1 = fake.sim.app_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode()
    assert pkcs1.startswith("-----BEGIN RSA PRIVATE KEY-----")
    with settings_env(**{**fake.settings(), "ALIPAY_PRIVATE_KEY": pkcs1}):
        adapter = from_settings(get_settings())
    assert adapter.create(charge()).endswith(f"/sandbox/pay/{ORDER}")
    assert signed_by(fake.sim.app_public_key, params_of(fake.requests[-1]))


@pytest.mark.parametrize(
    ("amount_fen", "text"),
    [(1, "0.01"), (10, "0.10"), (29, "0.29"), (115, "1.15"), (1990, "19.90"), (123456, "1234.56")],
)
def test_amounts_round_trip_exactly(
    fake: FakeAlipay, gateway: Alipay, amount_fen: int, text: str
) -> None:
    notification = paid(fake, gateway, amount_fen=amount_fen)
    assert fake.gateway_calls("alipay.trade.precreate")[0].biz["total_amount"] == text
    assert notification.fields["total_amount"] == text
    assert gateway.verify({}, notification.body).amount_fen == amount_fen
    assert gateway.query(ORDER).amount_fen == amount_fen


def test_yuan_and_fen_convert_through_decimal_only() -> None:
    # 0.29 * 100 and 1.15 * 100 are 28.999... and 114.999... in floats.
    assert [yuan(f) for f in (1, 29, 115, 100, 100000000)] == [
        "0.01",
        "0.29",
        "1.15",
        "1.00",
        "1000000.00",
    ]
    assert [fen(t) for t in ("0.29", "1.15", "19.9", "20", "0.00")] == [29, 115, 1990, 2000, 0]
    for bad in ("", "1e3", "-1.00", "1.005", "NaN", " 1.00", "1,00", "01.00", None, 1.0):
        assert fen(bad) is None, bad


# ------------------------------------------------------------------ query


def test_a_precreated_trade_not_yet_scanned_is_unpaid(fake: FakeAlipay, gateway: Alipay) -> None:
    gateway.create(charge())
    assert gateway.query(ORDER) == Report(ORDER, "unpaid", None, "CNY", None, None)
    # Alipay has no trade before the buyer scans the code.
    assert fake.gateway_calls("alipay.trade.query")[0].sub_code == "ACQ.TRADE_NOT_EXIST"


def test_a_trade_alipay_never_saw_is_unpaid(fake: FakeAlipay, gateway: Alipay) -> None:
    assert gateway.query("never-created") == Report(
        "never-created", "unpaid", None, "CNY", None, None
    )


def test_a_scanned_trade_is_unpaid_with_its_amount(fake: FakeAlipay, gateway: Alipay) -> None:
    gateway.create(charge())
    trade = fake.sim.scan(ORDER)
    assert gateway.query(ORDER) == Report(ORDER, "unpaid", 1990, "CNY", trade.trade_no, None)


def test_a_paid_trade_is_paid_at_alipay_s_time(fake: FakeAlipay, gateway: Alipay) -> None:
    paid(fake, gateway)
    trade = fake.sim.trade(ORDER)
    assert trade.gmt_payment is not None
    report = gateway.query(ORDER)
    assert report == Report(
        ORDER,
        "paid",
        1990,
        "CNY",
        trade.trade_no,
        trade.gmt_payment.replace(microsecond=0).astimezone(timezone.utc),
    )
    assert report.paid_at is not None and report.paid_at.utcoffset() == timedelta(0)


def test_a_send_pay_date_that_is_no_time_in_utc_leaves_the_payment_undated(
    fake: FakeAlipay, gateway: Alipay
) -> None:
    """Midnight of year 1 in Beijing is before year 1 in UTC: the payment the rest of the
    answer proves is reported without its time (the settlement dates it now)."""
    paid(fake, gateway)
    answer = query_answer(send_pay_date="0001-01-01 00:00:00")
    fake.answer_next(200, fake.sim.signed_answer(QUERY, answer))
    report = gateway.query(ORDER)
    assert (report.state, report.paid_at) == ("paid", None)


def test_a_closed_trade_is_closed(fake: FakeAlipay, gateway: Alipay) -> None:
    gateway.create(charge())
    fake.sim.scan(ORDER)
    gateway.close(ORDER)
    assert gateway.query(ORDER).state == "closed"


# ------------------------------------------------------------------ close


def test_closing_a_trade_waiting_for_payment_closes_it(fake: FakeAlipay, gateway: Alipay) -> None:
    gateway.create(charge())
    fake.sim.scan(ORDER)
    gateway.close(ORDER)
    assert fake.sim.trade(ORDER).status == "TRADE_CLOSED"
    assert fake.gateway_calls("alipay.trade.close")[0].code == "10000"


def test_closing_a_trade_alipay_does_not_know_succeeds(fake: FakeAlipay, gateway: Alipay) -> None:
    gateway.create(charge())
    gateway.close(ORDER)
    gateway.close("never-created")
    assert [c.sub_code for c in fake.gateway_calls("alipay.trade.close")] == [
        "ACQ.TRADE_NOT_EXIST",
        "ACQ.TRADE_NOT_EXIST",
    ]


def test_closing_a_closed_trade_again_succeeds(fake: FakeAlipay, gateway: Alipay) -> None:
    gateway.create(charge())
    fake.sim.scan(ORDER)
    gateway.close(ORDER)
    gateway.close(ORDER)  # Alipay answers ACQ.TRADE_STATUS_ERROR; the query says closed
    assert fake.gateway_calls("alipay.trade.close")[1].sub_code == "ACQ.TRADE_STATUS_ERROR"


def test_closing_a_paid_trade_is_a_provider_error(fake: FakeAlipay, gateway: Alipay) -> None:
    paid(fake, gateway)
    with pytest.raises(ProviderError, match=r"ACQ\.TRADE_STATUS_ERROR \(the trade is paid\)"):
        gateway.close(ORDER)
    assert fake.sim.trade(ORDER).status == "TRADE_SUCCESS"


# ------------------------------------------------------------------ provider failures


def every_call(gateway: Alipay) -> list[Callable[[], Any]]:
    return [
        lambda: gateway.create(charge()),
        lambda: gateway.query(ORDER),
        lambda: gateway.close(ORDER),
    ]


def test_a_provider_that_is_down_is_a_provider_error(fake: FakeAlipay, gateway: Alipay) -> None:
    fake.down()
    for call in every_call(gateway):
        with pytest.raises(ProviderError, match="Alipay unreachable"):
            call()


@pytest.mark.parametrize("status", [500, 502, 503])
def test_a_5xx_is_a_provider_error_naming_the_status(
    fake: FakeAlipay, gateway: Alipay, status: int
) -> None:
    for call in every_call(gateway):
        fake.answer_next(status, "busy")
        with pytest.raises(ProviderError, match=f"HTTP {status}"):
            call()


def test_a_slow_provider_times_out(fake: FakeAlipay) -> None:
    with settings_env(**fake.settings()):
        assert from_settings(get_settings()).timeout_s == 5
        adapter = from_settings(get_settings(), timeout_s=0.3)
    fake.stall_next(2)
    started = time.monotonic()
    with pytest.raises(ProviderError, match=r"no answer within 0\.3 s"):
        adapter.query(ORDER)
    assert time.monotonic() - started < 1.9  # unbounded, the answer would take 2 s


@pytest.mark.parametrize(
    "body",
    [
        "<html>502 Bad Gateway</html>",
        "[]",
        '{"sign": "x"}',
        '{"alipay_trade_query_response": "text", "sign": "x"}',
    ],
)
def test_an_answer_that_is_not_alipay_s_is_a_provider_error(
    fake: FakeAlipay, gateway: Alipay, body: str
) -> None:
    fake.answer_next(200, body)
    with pytest.raises(ProviderError, match=r"alipay\.trade\.query: "):
        gateway.query(ORDER)


QUERY = "alipay.trade.query"
PRECREATE = "alipay.trade.precreate"
BUSINESS_ERROR = {"code": "40004", "msg": "Business Failed", "sub_code": "ACQ.SYSTEM_ERROR"}


def query_answer(**changes: str) -> dict[str, str]:
    """A query's answer object for a paid ORDER, with `changes`."""
    answer = {"code": "10000", "msg": "Success", "out_trade_no": ORDER, "trade_no": "1"}
    return {**answer, "trade_status": "TRADE_SUCCESS", "total_amount": "19.90", **changes}


def test_an_answer_signed_with_another_key_is_a_provider_error(
    fake: FakeAlipay, gateway: Alipay
) -> None:
    fake.answer_next(200, fake.sim.signed_answer(QUERY, query_answer(), key=new_rsa_key()))
    with pytest.raises(ProviderError, match="the answer's sign does not verify"):
        gateway.query(ORDER)


def test_an_answer_changed_after_signing_is_a_provider_error(
    fake: FakeAlipay, gateway: Alipay
) -> None:
    genuine = fake.sim.signed_answer(QUERY, query_answer(trade_status="TRADE_CLOSED"))
    assert b"TRADE_CLOSED" in genuine
    fake.answer_next(200, genuine.replace(b"TRADE_CLOSED", b"TRADE_SUCCESS"))
    with pytest.raises(ProviderError, match="the answer's sign does not verify"):
        gateway.query(ORDER)


def test_an_unsigned_error_answer_is_a_provider_error_naming_its_code(
    fake: FakeAlipay, gateway: Alipay
) -> None:
    fake.answer_next(
        200,
        '{"alipay_trade_query_response":{"code":"20000","msg":"Service Currently Unavailable",'
        '"sub_code":"isp.unknown-error","sub_msg":"系统繁忙"}}',
    )
    with pytest.raises(ProviderError, match="unsigned error 20000"):
        gateway.query(ORDER)


@pytest.mark.parametrize(
    ("api", "answer", "message"),
    [
        (PRECREATE, BUSINESS_ERROR, r"refused: 40004 ACQ\.SYSTEM_ERROR"),
        (PRECREATE, {"code": "10000", "out_trade_no": ORDER}, "without a qr_code"),
        (PRECREATE, {"code": "10000", "out_trade_no": "x", "qr_code": "q"}, "another out_trade_no"),
        (QUERY, BUSINESS_ERROR, r"refused: 40004 ACQ\.SYSTEM_ERROR"),
        (QUERY, query_answer(trade_status="TRADE_PENDING"), "unknown trade_status TRADE_PENDING"),
        (QUERY, query_answer(total_amount="1e3"), "unreadable total_amount"),
        (QUERY, query_answer(out_trade_no="x"), "another out_trade_no"),
        ("alipay.trade.close", BUSINESS_ERROR, r"refused: 40004 ACQ\.SYSTEM_ERROR"),
    ],
)
def test_a_signed_answer_we_cannot_use_is_a_provider_error(
    fake: FakeAlipay, gateway: Alipay, api: str, answer: dict[str, str], message: str
) -> None:
    fake.answer_next(200, fake.sim.signed_answer(api, answer))
    call = {
        PRECREATE: lambda: gateway.create(charge()),
        QUERY: lambda: gateway.query(ORDER),
        "alipay.trade.close": lambda: gateway.close(ORDER),
    }[api]
    with pytest.raises(ProviderError, match=message):
        call()


# ------------------------------------------------------------------ configuration


@pytest.mark.parametrize(
    "variable", ["ALIPAY_APPID", "ALIPAY_PRIVATE_KEY", "ALIPAY_PUBLIC_KEY", "ALIPAY_GATEWAY"]
)
def test_a_missing_variable_is_named(fake: FakeAlipay, variable: str) -> None:
    with (
        settings_env(**{**fake.settings(), variable: None}),
        pytest.raises(ProviderError, match=f"not configured: {variable} unset"),
    ):
        from_settings(get_settings())


def test_keys_that_do_not_load_are_a_provider_error(fake: FakeAlipay) -> None:
    env = fake.settings()
    body_only = "".join(env["ALIPAY_PRIVATE_KEY"].splitlines()[1:-1])  # the console's form
    for variable, value in [
        ("ALIPAY_PRIVATE_KEY", body_only),
        ("ALIPAY_PRIVATE_KEY", env["ALIPAY_PRIVATE_KEY"][:-200]),
        ("ALIPAY_PUBLIC_KEY", "not a key"),
    ]:
        with settings_env(**{**env, variable: value}), pytest.raises(ProviderError) as raised:
            from_settings(get_settings())
        assert "not an RSA key in PEM form" in str(raised.value)
    with (
        settings_env(**{**env, "ALIPAY_PRIVATE_KEY": public_pem(fake.sim.app_key)}),
        pytest.raises(ProviderError, match="holds a public key"),
    ):
        from_settings(get_settings())


# ------------------------------------------------------------------ notifications


def test_a_genuine_notification_verifies(fake: FakeAlipay, gateway: Alipay) -> None:
    notification = paid(fake, gateway)
    trade = fake.sim.trade(ORDER)
    assert trade.gmt_payment is not None
    headers = {"content-type": notification.content_type}
    kept_headers, kept_body = dict(headers), bytes(notification.body)

    report = gateway.verify(headers, notification.body)

    assert report == Report(
        ORDER,
        "paid",
        1990,
        "CNY",
        trade.trade_no,
        trade.gmt_payment.replace(microsecond=0).astimezone(timezone.utc),
    )
    assert headers == kept_headers and notification.body == kept_body
    # The SDK pops sign_type from what it verifies: the same body verifies again.
    assert gateway.verify(headers, notification.body) == report


@pytest.mark.parametrize(
    ("status", "state"),
    [
        ("TRADE_SUCCESS", "paid"),
        ("TRADE_FINISHED", "paid"),
        ("WAIT_BUYER_PAY", "unpaid"),
        ("TRADE_CLOSED", "closed"),
    ],
)
def test_the_trade_status_maps_to_the_state(
    fake: FakeAlipay, gateway: Alipay, status: str, state: str
) -> None:
    paid(fake, gateway)
    report = gateway.verify({}, fake.sim.notification(ORDER, trade_status=status).body)
    assert report.state == state
    assert (report.paid_at is not None) == (state == "paid")


@pytest.mark.parametrize(
    ("forge", "status"),
    [
        (FakeAlipay.tampered, 401),
        (FakeAlipay.wrong_key, 401),
        (FakeAlipay.unsigned, 401),
        (FakeAlipay.wrong_app_id, 400),
        (FakeAlipay.wrong_seller_id, 400),
    ],
)
def test_a_forged_notification_is_rejected(
    fake: FakeAlipay,
    gateway: Alipay,
    forge: Callable[[FakeAlipay, str], Notification],
    status: int,
) -> None:
    paid(fake, gateway)
    with pytest.raises(Rejected) as rejected:
        gateway.verify({}, forge(fake, ORDER).body)
    assert rejected.value.status == status


@pytest.mark.parametrize(
    "tampered",
    [
        {"sign": "not base64!"},
        {"sign": base64.b64encode(b"short").decode()},
        {"sign_type": "RSA"},  # the SDK raises for a sign_type it was not built with
        {"extra": "1"},
        {"gmt_payment": None},
    ],
)
def test_a_notification_changed_after_signing_is_rejected_as_unsigned(
    fake: FakeAlipay, gateway: Alipay, tampered: dict[str, str | None]
) -> None:
    paid(fake, gateway)
    with pytest.raises(Rejected) as rejected:
        gateway.verify({}, fake.sim.notification(ORDER, tampered=tampered).body)
    assert rejected.value.status == 401


def test_a_body_that_is_not_one_form_is_rejected(fake: FakeAlipay, gateway: Alipay) -> None:
    genuine = paid(fake, gateway).body
    for body in (
        "total_amount=19.90&subject=\u6708".encode("gbk"),  # not UTF-8
        b"sign",  # a field without "="
        genuine + b"&total_amount=0.01",  # which total_amount was signed?
    ):
        with pytest.raises(Rejected) as rejected:
            gateway.verify({}, body)
        assert rejected.value.status == 400
    with pytest.raises(Rejected) as rejected:
        gateway.verify({}, b"")
    assert rejected.value.status == 401


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"total_amount": "abc"}, "total_amount is not an amount"),
        ({"total_amount": "-19.90"}, "total_amount is not an amount"),
        ({"trade_status": "TRADE_PENDING"}, "unknown trade_status"),
        ({"trade_status": None}, "unknown trade_status"),
        ({"out_trade_no": None}, "no out_trade_no"),
    ],
)
def test_a_genuine_notification_we_cannot_read_is_rejected(
    fake: FakeAlipay, gateway: Alipay, fields: dict[str, str | None], reason: str
) -> None:
    paid(fake, gateway)
    with pytest.raises(Rejected, match=reason) as rejected:
        gateway.verify({}, fake.sim.notification(ORDER, **fields).body)
    assert rejected.value.status == 400


def test_amount_and_order_are_the_caller_s_to_check(fake: FakeAlipay, gateway: Alipay) -> None:
    paid(fake, gateway)
    assert gateway.verify({}, fake.wrong_amount(ORDER, "0.01").body).amount_fen == 1
    assert gateway.verify({}, fake.unknown_order(ORDER, "no-such-order").body).order_id == (
        "no-such-order"
    )


class NotifyReceiver(LocalServer):
    """Our notify endpoint's part that is the adapter's: verify, answer success or fail."""

    def __init__(self, gateway: Alipay) -> None:
        self.gateway = gateway
        self.reports: list[Report] = []

    def handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class _Handler(BaseHTTPRequestHandler):
            def log_message(self, *_args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                headers = {k.lower(): v for k, v in self.headers.items()}
                try:
                    receiver.reports.append(receiver.gateway.verify(headers, body))
                    answer = b"success"
                except Rejected:
                    answer = b"fail"
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

        return _Handler


def test_the_sandbox_pay_page_pays_and_notifies(fake: FakeAlipay) -> None:
    with settings_env(**fake.settings()):
        adapter = from_settings(get_settings())
    with NotifyReceiver(adapter) as receiver:
        notify_url = f"http://127.0.0.1:{receiver.port}/payments/alipay/notify"
        with settings_env(**fake.settings(notify_url)):
            adapter = receiver.gateway = from_settings(get_settings())
        qr_code = adapter.create(charge())
        with urllib.request.urlopen(qr_code, timeout=5) as page:
            text = page.read().decode()
        assert "19.90" in text and "月度会员 Monthly" in text and "<button" in text
        assert adapter.query(ORDER).state == "unpaid"  # scanned: Alipay knows it now
        request = urllib.request.Request(qr_code, data=b"", method="POST")
        with urllib.request.urlopen(request, timeout=5) as page:
            text = page.read().decode()
        assert "The merchant answered: <b>success</b>" in text
        [report] = receiver.reports
        assert (report.order_id, report.state, report.amount_fen) == (ORDER, "paid", 1990)
        assert adapter.query(ORDER).state == "paid"
        [delivery] = fake.sim.deliveries
        assert (delivery.url, delivery.answer) == (notify_url, "success")


# ------------------------------------------------------------------ the simulator itself


def sim_request(sim: AlipaySim, **changes: str | None) -> dict[str, str]:
    """A precreate as the app would sign it, with `changes` made before signing."""
    params: dict[str, str] = {
        "app_id": sim.app_id,
        "method": PRECREATE,
        "charset": "utf-8",
        "sign_type": "RSA2",
        "timestamp": datetime.now(BEIJING).strftime("%Y-%m-%d %H:%M:%S"),
        "version": "1.0",
        "biz_content": '{"out_trade_no":"o1","total_amount":"1.00","subject":"s"}',
    }
    for name, value in changes.items():
        if value is None:
            params.pop(name, None)
        else:
            params[name] = value
    text = "&".join(f"{k}={v}" for k, v in sorted(params.items()))
    return {**params, "sign": rsa2_sign(sim.app_key, text)}


@pytest.mark.parametrize(
    ("changes", "code", "sub_code"),
    [
        ({}, "10000", None),
        ({"app_id": "2021999999999999"}, "40002", "isv.invalid-app-id"),
        ({"sign_type": "RSA"}, "40002", "isv.invalid-signature-type"),
        ({"timestamp": None}, "40001", "isv.missing-timestamp"),
        ({"timestamp": "2020-01-01 00:00:00"}, "40002", "isv.invalid-timestamp"),
        (
            {"biz_content": '{"out_trade_no":"o1","total_amount":"0.00","subject":"s"}'},
            "40004",
            "ACQ.INVALID_PARAMETER",
        ),
    ],
)
def test_the_simulator_checks_requests_like_the_gateway(
    changes: dict[str, str | None], code: str, sub_code: str | None
) -> None:
    sim = AlipaySim()
    query = urlencode(sim_request(sim, **changes))
    answer = sim.handle("GET", f"/gateway.do?{query}", {"Host": "sandbox.test:8000"}, b"")
    text = answer.body.decode()
    inner = text[text.index("{", 1) : text.rindex(',"sign"')]
    assert rsa2_verifies(sim.alipay_key.public_key(), inner, json.loads(text)["sign"])
    response = json.loads(text)["alipay_trade_precreate_response"]
    assert (response["code"], response.get("sub_code")) == (code, sub_code)
    if code == "10000":  # served without a base URL: the qr_code follows the Host header
        assert response["qr_code"] == "http://sandbox.test:8000/sandbox/pay/o1"


def test_the_simulator_refuses_a_sign_that_does_not_cover_the_request() -> None:
    sim = AlipaySim()
    params = {**sim_request(sim), "notify_url": "http://attacker.example/notify"}
    answer = sim.handle("POST", "/gateway.do", {"Content-Type": FORM}, urlencode(params).encode())
    response = json.loads(answer.body)["alipay_trade_precreate_response"]
    assert response["sub_code"] == "isv.invalid-signature"
    assert sim.trades == {}


def test_the_simulator_answers_an_unknown_method_unsigned() -> None:
    sim = AlipaySim()
    query = urlencode(sim_request(sim, method="alipay.trade.refund"))
    answer = json.loads(sim.handle("GET", f"/gateway.do?{query}", {}, b"").body)
    assert answer == {
        "error_response": {
            "code": "40002",
            "msg": "Invalid Arguments",
            "sub_code": "isv.invalid-method",
            "sub_msg": "不存在的方法名",
        }
    }


# ------------------------------------------------------------------ no key material


def pem_lines(pem: str) -> list[str]:
    return [line for line in pem.splitlines() if line and not line.startswith("-----")]


def test_no_key_or_sign_reaches_an_exception_or_a_log_line(fake: FakeAlipay) -> None:
    env = fake.settings()
    secrets = [
        *pem_lines(env["ALIPAY_PRIVATE_KEY"]),
        *pem_lines(env["ALIPAY_PUBLIC_KEY"]),
        *pem_lines(public_pem(fake.sim.app_key)),
    ]
    failures: list[BaseException] = []

    def expect_failure(action: Callable[[], Any]) -> None:
        try:
            action()
        except (ProviderError, Rejected) as error:
            failures.append(error)
        else:
            raise AssertionError("expected a failure")

    with capture_logs(logging.DEBUG) as logs:
        with settings_env(**env):
            adapter = from_settings(get_settings())
        for variable, value in [
            ("ALIPAY_PRIVATE_KEY", env["ALIPAY_PRIVATE_KEY"][:-300]),
            ("ALIPAY_PUBLIC_KEY", env["ALIPAY_PUBLIC_KEY"][:-100]),
            ("ALIPAY_PRIVATE_KEY", env["ALIPAY_PUBLIC_KEY"]),
        ]:
            with settings_env(**{**env, variable: value}):
                expect_failure(lambda: from_settings(get_settings()))
        with settings_env(**{**env, "ALIPAY_PRIVATE_KEY": private_pem(new_rsa_key())}):
            wrong = from_settings(get_settings())
        expect_failure(lambda: wrong.create(charge("other")))
        notification = paid(fake, adapter)
        expect_failure(lambda: adapter.close(ORDER))
        for forged in (fake.tampered, fake.wrong_key, fake.wrong_app_id, fake.unsigned):
            expect_failure(lambda forged=forged: adapter.verify({}, forged(ORDER).body))
        fake.answer_next(200, fake.sim.signed_answer(QUERY, {}, key=new_rsa_key()))
        expect_failure(lambda: adapter.query(ORDER))
        fake.answer_next(200, '{"alipay_trade_query_response":{"code":"20000"}}')
        expect_failure(lambda: adapter.query(ORDER))
        fake.answer_next(502, "down")
        expect_failure(lambda: adapter.query(ORDER))
        fake.down()
        expect_failure(lambda: adapter.query(ORDER))

    signs = [params_of(r)["sign"] for r in fake.requests if "sign" in params_of(r)]
    signs.append(notification.fields["sign"])
    secrets += signs + [quote_plus(sign) for sign in signs]  # as sent, and URL-encoded
    app = AlipayApp(fake.sim.app_id, env["ALIPAY_PRIVATE_KEY"], env["ALIPAY_PUBLIC_KEY"])
    texts = [logs.text, repr(adapter), repr(app)]
    for error in failures:
        assert error.__cause__ is None
        assert error.__context__ is None or error.__suppress_context__
        texts += [str(error), repr(error), "".join(traceback.format_exception(error))]
    leaked = [s for s in secrets for text in texts if s in text]
    assert not leaked
    assert len(failures) == 13
