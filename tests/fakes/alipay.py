"""A fake Alipay open platform: the protocol simulator (infra.local.sandbox.alipay) served by
a real HTTP server on 127.0.0.1, with knobs for what the simulator does not do by itself.

- `fake.settings(notify_url)`: the ALIPAY_* variables that point the adapter at it.
- `fake.reset()`: a fresh simulator with the same keys, knobs cleared, started again if
  down: one server can serve a whole module.
- `fake.down()`: the server stops, so connections to its gateway URL are refused;
  `fake.answer_next(status, body)` scripts the next answers in order (a 5xx, a body that is
  not JSON, an answer signed with another key: `fake.sim.signed_answer(..., key=...)`);
  `fake.stall_next(seconds)` holds the next answer back that long; `fake.drop_next()` closes
  the next request's connection without an answer (a proxy or the gateway going away).
- `fake.requests`: every HTTP request received (method, path with query, headers, body);
  `fake.sim.calls`: every gateway call as the simulator judged it (parameters, biz_content,
  the code answered).
- Notifications: `fake.sim.pay(out_trade_no)` is the genuine one, naming the seller
  `FakeAlipay(seller_id=...)` was made with (ALIPAY_SELLER_ID in `fake.settings()`);
  `tampered`, `wrong_key`, `wrong_app_id`, `wrong_seller_id`, `wrong_amount`, `unknown_order`
  and `unsigned` build the forgeries.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any

from infra.local.sandbox.alipay import (
    SELLER_ID,
    AlipaySim,
    GatewayCall,
    Notification,
    new_rsa_key,
)
from tests.fakes.server import LocalServer

NOTIFY_URL = "http://127.0.0.1:9/payments/alipay/notify"


@dataclass(frozen=True)
class Received:
    method: str
    path: str  # with the query string
    headers: dict[str, str]  # lower-case names
    body: bytes


@dataclass(frozen=True)
class _Scripted:
    status: int
    body: bytes
    content_type: str


class FakeAlipay(LocalServer):
    def __init__(self, app_id: str = "2021000000000001", *, seller_id: str = SELLER_ID) -> None:
        self.sim = AlipaySim(app_id, seller_id=seller_id)
        self.requests: list[Received] = []
        self._scripted: deque[_Scripted] = deque()
        self._stalls: deque[float] = deque()
        self._drops = 0
        self._lock = threading.Lock()
        self._port: int | None = None

    # ------------------------------------------------------------ life

    def start(self) -> FakeAlipay:
        super().start()
        self._port = self.port
        self.sim.base_url = self.base_url
        return self

    def reset(self) -> None:
        """A fresh simulator (no trades, no calls) with the same app id, seller and keys, no
        knobs set, the server started again if it was down: one server serves many tests."""
        with self._lock:
            self.sim = AlipaySim(
                self.sim.app_id,
                seller_id=self.sim.seller_id,
                alipay_key=self.sim.alipay_key,
                app_key=self.sim.app_key,
            )
            self.requests.clear()
            self._scripted.clear()
            self._stalls.clear()
            self._drops = 0
        if self._server is None:
            self.start()
        self.sim.base_url = self.base_url

    def down(self) -> None:
        """Stop answering: connections to the gateway URL are refused."""
        self.stop()

    @property
    def base_url(self) -> str:
        assert self._port is not None, "start() first"
        return f"http://127.0.0.1:{self._port}"

    @property
    def gateway_url(self) -> str:
        return f"{self.base_url}/gateway.do"

    def settings(self, notify_url: str = NOTIFY_URL) -> dict[str, str]:
        """The ALIPAY_* variables for an adapter against this fake."""
        return {
            **self.sim.app_settings(),
            "ALIPAY_GATEWAY": self.gateway_url,
            "ALIPAY_NOTIFY_URL": notify_url,
        }

    # ------------------------------------------------------------ knobs

    def answer_next(
        self, status: int, body: bytes | str, content_type: str = "text/html;charset=utf-8"
    ) -> None:
        data = body.encode() if isinstance(body, str) else body
        with self._lock:
            self._scripted.append(_Scripted(status, data, content_type))

    def stall_next(self, seconds: float) -> None:
        with self._lock:
            self._stalls.append(seconds)

    def drop_next(self) -> None:
        with self._lock:
            self._drops += 1

    def _take_drop(self) -> bool:
        with self._lock:
            if not self._drops:
                return False
            self._drops -= 1
            return True

    def gateway_calls(self, api: str) -> list[GatewayCall]:
        return [call for call in self.sim.calls if call.api == api]

    # ------------------------------------------------------------ forged notifications

    def tampered(self, out_trade_no: str) -> Notification:
        """Genuinely signed, then its total_amount changed."""
        return self.sim.notification(out_trade_no, tampered={"total_amount": "0.01"})

    def wrong_key(self, out_trade_no: str) -> Notification:
        """Signed by a key that is not Alipay's."""
        return self.sim.notification(out_trade_no, key=new_rsa_key())

    def wrong_app_id(self, out_trade_no: str) -> Notification:
        """Genuine, for another app."""
        return self.sim.notification(
            out_trade_no, app_id="2021999999999999", auth_app_id="2021999999999999"
        )

    def wrong_seller_id(self, out_trade_no: str) -> Notification:
        """Genuine, for our app and another seller (one a service provider's app serves)."""
        return self.sim.notification(out_trade_no, seller_id="2088999999999999")

    def wrong_amount(self, out_trade_no: str, total_amount: str = "0.01") -> Notification:
        """Genuinely signed, with another amount than the trade's."""
        return self.sim.notification(out_trade_no, total_amount=total_amount)

    def unknown_order(self, out_trade_no: str, other: str = "no-such-order") -> Notification:
        """Genuinely signed, for an out_trade_no nobody created."""
        return self.sim.notification(out_trade_no, out_trade_no=other)

    def unsigned(self, out_trade_no: str) -> Notification:
        return self.sim.notification(out_trade_no, tampered={"sign": None})

    # ------------------------------------------------------------ HTTP

    def _answer(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Any:
        with self._lock:
            self.requests.append(Received(method, path, headers, body))
            stall = self._stalls.popleft() if self._stalls else 0.0
            scripted = self._scripted.popleft() if self._scripted else None
            sim = self.sim  # the one of this request's test, should a reset come meanwhile
        if stall:
            time.sleep(stall)
        if scripted is not None:
            return scripted.status, {"Content-Type": scripted.content_type}, scripted.body
        answer = sim.handle(method, path, headers, body)
        return answer.status, answer.headers, answer.body

    def handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class _Handler(BaseHTTPRequestHandler):
            def log_message(self, *_args: Any) -> None:
                pass

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {k.lower(): v for k, v in self.headers.items()}
                if fake._take_drop():
                    with fake._lock:
                        fake.requests.append(Received(self.command, self.path, headers, body))
                    self.close_connection = True
                    return
                status, answer_headers, data = fake._answer(self.command, self.path, headers, body)
                try:
                    self.send_response(status)
                    for name, value in answer_headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up waiting (a timeout test)

            do_GET = _serve
            do_POST = _serve
            do_PUT = _serve

        return _Handler
