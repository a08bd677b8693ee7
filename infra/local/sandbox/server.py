"""The payment sandbox of `make run`: each provider's simulator on a port of its own, and
the variables that point the app at them.

With APP_ENV=local and a channel not configured (no WECHATPAY_API_BASE, no ALIPAY_GATEWAY),
the local cloud starts that channel's simulator and fills in its variables: the API base or
gateway, the notify URL (the local cloud's own notify route), and the keys the simulator
made for this run. So the app runs the real adapters, SDKs and verification against it,
exactly as against the provider; only the keys and the host differ. The order's
`code_url`/`qr_code` is the simulator's pay page (`/sandbox/pay/<order id>`), whose button
pays the trade and sends the signed notification. Production refuses both simulators'
plain-http addresses (app.config).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

from infra.local.sandbox.alipay import AlipaySim
from infra.local.sandbox.answer import SimAnswer
from infra.local.sandbox.wechatpay import WechatPaySim


class Simulator(Protocol):
    def handle(
        self, method: str, path_with_query: str, headers: Mapping[str, str], body: bytes
    ) -> SimAnswer: ...


class SimulatorServer:
    """One simulator over HTTP on `host`, any free port. The simulator is made once the port
    is known (`make(base_url)`), so the pay pages it links to are its own."""

    def __init__(self, make: Callable[[str], Simulator], host: str = "127.0.0.1") -> None:
        simulator: list[Simulator] = []

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_args: Any) -> None:
                pass

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                answer = simulator[0].handle(self.command, self.path, dict(self.headers), body)
                answer.write(self)

            do_GET = do_POST = _serve

        self._server = ThreadingHTTPServer((host, 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://{host}:{self._server.server_address[1]}"
        self.simulator = make(self.url)
        simulator.append(self.simulator)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class PaymentSandbox:
    """The simulators of the channels `environ` leaves unconfigured, started, and the
    variables that configure the app for them (`env`)."""

    def __init__(self, environ: Mapping[str, str], api_url: str, host: str = "127.0.0.1") -> None:
        self.servers: list[SimulatorServer] = []
        self.env: dict[str, str] = {}
        if not environ.get("WECHATPAY_API_BASE"):
            wechat = SimulatorServer(lambda url: WechatPaySim(base_url=url), host)
            self.servers.append(wechat)
            assert isinstance(wechat.simulator, WechatPaySim)
            self.env.update(wechat.simulator.merchant_settings())
            self.env["WECHATPAY_API_BASE"] = wechat.url
            self.env["WECHATPAY_NOTIFY_URL"] = f"{api_url}/payments/wechat/notify"
        if not environ.get("ALIPAY_GATEWAY"):
            try:
                alipay = SimulatorServer(lambda url: AlipaySim(base_url=url), host)
            except BaseException:
                self.stop()  # the WeChat Pay simulator, if it started
                raise
            self.servers.append(alipay)
            assert isinstance(alipay.simulator, AlipaySim)
            self.env.update(alipay.simulator.app_settings())
            self.env["ALIPAY_GATEWAY"] = f"{alipay.url}/gateway.do"
            self.env["ALIPAY_NOTIFY_URL"] = f"{api_url}/payments/alipay/notify"

    def stop(self) -> None:
        for server in self.servers:
            server.stop()
