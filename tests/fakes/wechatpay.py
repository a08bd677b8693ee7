"""A fake WeChat Pay v3 API: the simulator (infra.local.sandbox.wechatpay) on a real HTTP
server on 127.0.0.1, with the knobs a test needs that WeChat Pay never turns on its own.

- `fake.settings(notify_url)`: the WECHATPAY_* variables that point our adapter at it
  (`key_format="pkcs1"` gives the merchant key as PKCS#1).
- `fake.requests`: every request received, with whether its `Authorization` verified under
  the merchant key (the simulator answers 401 SIGN_ERROR when it does not).
- `fake.reset()` forgets trades, requests and knobs (one server can serve many tests).
- `fake.down()` answers 503 to everything, `down("reset")` closes each connection without an
  answer, `down("stall")` answers nothing for `stall_s` seconds; `fake.up()` ends it.
  `fake.slow(delay_s)` answers every request, as it would, `delay_s` late (0: at once).
- `fake.answer_next(status, payload)`: the next request gets this answer (signed with the
  platform key unless `signed=False`, or with `key`); `answer_next_body(status, body)`
  sends bytes as they are (JSON `json.dumps` cannot write), signed with the platform key.
- Notifications: `fake.pay(no)` pays a trade and gives its genuine notification;
  `tampered`, `signed_with_other_key`, `other_apiv3_key`, `timestamp_off`, `unknown_serial`,
  `other_mchid`, `other_appid`, `other_amount`, `unknown_order`, `signed_body` build forged
  or unexpected ones. Each is a `Notification` (headers, body); `lower_headers` is how the
  serverless event carries them.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any, Literal

from cryptography.hazmat.primitives.asymmetric import rsa

from infra.local.sandbox.answer import SimAnswer
from infra.local.sandbox.wechatpay import JSON_TYPE, Notification, WechatPaySim
from tests.fakes.server import LocalServer

Outage = Literal["503", "reset", "stall"]


@dataclass(frozen=True)
class ReceivedRequest:
    method: str
    path: str  # with the query string, as sent
    headers: dict[str, str]  # lower-case names
    body: bytes
    authorized: bool  # the Authorization verified under the merchant key

    @property
    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


class FakeWechatPay(LocalServer):
    def __init__(self, *, clock: Callable[[], float] = time.time, stall_s: float = 7.0) -> None:
        self.sim = WechatPaySim(clock=clock)
        self.stall_s = stall_s
        self.requests: list[ReceivedRequest] = []
        self._outage: Outage | None = None
        self._delay_s = 0.0
        self._scripted: list[SimAnswer] = []
        self._other_key: rsa.RSAPrivateKey | None = None
        self._lock = threading.Lock()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def settings(
        self,
        notify_url: str = "https://api.example.com/payments/wechat/notify",
        *,
        key_format: Literal["pkcs8", "pkcs1"] = "pkcs8",
    ) -> dict[str, str]:
        return {
            **self.sim.merchant_settings(key_format),
            "WECHATPAY_API_BASE": self.base_url,
            "WECHATPAY_NOTIFY_URL": notify_url,
        }

    # ------------------------------------------------------------ knobs

    def reset(self) -> None:
        """No trades, no requests, no scripted answer, no outage; the same keys."""
        with self._lock:
            self.sim.trades.clear()
            self.requests.clear()
            self._scripted.clear()
            self._outage = None
            self._delay_s = 0.0

    def down(self, how: Outage = "503") -> None:
        self._outage = how

    def up(self) -> None:
        self._outage = None

    def slow(self, delay_s: float) -> None:
        self._delay_s = delay_s

    def answer_next(
        self,
        status: int,
        payload: Any = None,
        *,
        signed: bool = True,
        key: rsa.RSAPrivateKey | None = None,
    ) -> None:
        if signed:
            answer = self.sim.signed(status, payload, key=key)
        else:
            body = b"" if payload is None else json.dumps(payload).encode()
            answer = SimAnswer(status, {"Content-Type": JSON_TYPE}, body)
        with self._lock:
            self._scripted.append(answer)

    def answer_next_body(self, status: int, body: bytes) -> None:
        headers = {**self.sim.signature_headers(body), "Content-Type": JSON_TYPE}
        with self._lock:
            self._scripted.append(SimAnswer(status, headers, body))

    @property
    def other_key(self) -> rsa.RSAPrivateKey:
        """An RSA key that is neither the platform's nor the merchant's."""
        if self._other_key is None:
            self._other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        return self._other_key

    # ------------------------------------------------------------ notifications

    def pay(self, out_trade_no: str) -> Notification:
        return self.sim.pay(out_trade_no)

    def tampered(self, out_trade_no: str) -> Notification:
        """Genuine, then one character of the ciphertext changed: the signature breaks."""
        genuine = self.sim.notification(out_trade_no)
        event = json.loads(genuine.body)
        ciphertext = event["resource"]["ciphertext"]
        event["resource"]["ciphertext"] = ("B" if ciphertext[0] == "A" else "A") + ciphertext[1:]
        return Notification(out_trade_no, genuine.headers, json.dumps(event).encode())

    def signed_with_other_key(self, out_trade_no: str) -> Notification:
        return self.sim.notification(out_trade_no, signing_key=self.other_key)

    def other_apiv3_key(self, out_trade_no: str) -> Notification:
        """Signed by the platform, but encrypted under an APIv3 key that is not ours."""
        return self.sim.notification(out_trade_no, apiv3_key=secrets.token_hex(16))

    def timestamp_off(self, out_trade_no: str, seconds: int) -> Notification:
        return self.sim.notification(out_trade_no, timestamp=int(self.sim.clock()) + seconds)

    def unknown_serial(self, out_trade_no: str) -> Notification:
        """Signed under a serial that is not our public_key_id: a platform certificate's
        (hex), which would make the SDK download certificates to look it up."""
        return self.sim.notification(
            out_trade_no, signing_key=self.other_key, serial=secrets.token_hex(20).upper()
        )

    def other_mchid(self, out_trade_no: str) -> Notification:
        return self.sim.notification(out_trade_no, mchid="1900009999")

    def other_appid(self, out_trade_no: str) -> Notification:
        return self.sim.notification(out_trade_no, appid="wx0000000000000000")

    def other_amount(self, out_trade_no: str, amount_fen: int) -> Notification:
        return self.sim.notification(out_trade_no, amount_fen=amount_fen)

    def unknown_order(self, out_trade_no: str = "NO-SUCH-ORDER-1") -> Notification:
        assert out_trade_no not in self.sim.trades
        return self.sim.notification(out_trade_no)

    def signed_body(self, body: bytes) -> Notification:
        """Any body, correctly signed by the platform: for shapes WeChat Pay never sends."""
        return Notification("", self.sim.signature_headers(body), body)

    # ------------------------------------------------------------ HTTP

    def _answer(self, method: str, path: str, headers: dict[str, str], body: bytes) -> SimAnswer:
        problem = self.sim.authorization_problem(method, path, headers, body)
        with self._lock:
            self.requests.append(ReceivedRequest(method, path, headers, body, problem is None))
            if self._scripted:
                return self._scripted.pop(0)
        return self.sim.handle(method, path, headers, body)

    def handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_args: Any) -> None:
                pass

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {name.lower(): value for name, value in self.headers.items()}
                time.sleep(fake._delay_s)
                outage = fake._outage
                if outage == "reset":
                    self.close_connection = True
                    return
                if outage == "stall":
                    time.sleep(fake.stall_s)
                    self.close_connection = True
                    return
                if outage == "503":
                    answer = SimAnswer(
                        503,
                        {"Content-Type": "text/html"},
                        b"<html><body>503 Service Temporarily Unavailable</body></html>",
                    )
                else:
                    answer = fake._answer(self.command, self.path, headers, body)
                answer.write(self)

            do_GET = _serve
            do_POST = _serve

        return _Handler
