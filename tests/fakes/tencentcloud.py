"""A fake Tencent Cloud API endpoint: a real HTTP server on 127.0.0.1 that checks TC3-HMAC-SHA256
signatures exactly as the API does and dispatches on `X-TC-Action`.

Point an SDK client at it with `HttpProfile(protocol="http", endpoint=fake.endpoint)` (the
app does this when TENCENTCLOUD_API_ENDPOINT is set). Register what an action answers with
`fake.on("SendSms", fn)`; `fn(params, call)` returns the `Response` body (RequestId is added)
or raises `TencentCloudError(code, message)`. Every request that reached a handler is in
`fake.calls`, with when it arrived (`Call.at`, time.monotonic()); every request refused
before one (bad signature, unknown key, stale timestamp, unknown action, a request its
product's validator refused) is in `fake.refused`. `fake.validate_with("scf", fn)` has
`fn(action, params)` check every request to that product before it is dispatched
(tests/fakes/api_schema.py checks them against the official schema).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler
from typing import Any

from tests.fakes.server import LocalServer
from tests.support import log_guard

_AUTH = re.compile(
    r"^TC3-HMAC-SHA256 Credential=(?P<id>[^/]+)/(?P<date>\d{4}-\d{2}-\d{2})"
    r"/(?P<service>[a-z0-9]+)/tc3_request,"
    r" SignedHeaders=(?P<signed>[a-z0-9;\-]+), Signature=(?P<sig>[0-9a-f]{64})$"
)
MAX_SKEW_S = 300


class TencentCloudError(Exception):
    def __init__(self, code: str, message: str = "") -> None:
        super().__init__(code)
        self.code = code
        self.message = message or code


@dataclass
class Call:
    action: str
    service: str
    version: str
    region: str
    params: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)
    # When the request reached its handler (time.monotonic()), before the handler ran.
    at: float = field(default_factory=time.monotonic)


Handler = Callable[[dict[str, Any], Call], dict[str, Any]]
Validator = Callable[[str, dict[str, Any]], None]


def tc3_signature(
    secret_key: str,
    *,
    service: str,
    date: str,
    timestamp: str,
    content_type: str,
    host: str,
    body: bytes,
) -> str:
    canonical = "\n".join(
        [
            "POST",
            "/",
            "",
            f"content-type:{content_type}\nhost:{host}\n",
            "content-type;host",
            hashlib.sha256(body).hexdigest(),
        ]
    )
    scope = f"{date}/{service}/tc3_request"
    to_sign = "\n".join(
        ["TC3-HMAC-SHA256", timestamp, scope, hashlib.sha256(canonical.encode()).hexdigest()]
    )

    def _mac(key: bytes, msg: str) -> bytes:
        return hmac.new(key, msg.encode(), hashlib.sha256).digest()

    key = _mac(_mac(_mac(("TC3" + secret_key).encode(), date), service), "tc3_request")
    return hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()


class FakeTencentCloud(LocalServer):
    def __init__(
        self, secret_id: str = "AKIDfaketestkey000001", secret_key: str = "fake-secret-key"
    ) -> None:
        self.secret_id = secret_id
        self.secret_key = secret_key
        self.handlers: dict[str, Handler] = {}
        self.validators: dict[str, Validator] = {}
        self.calls: list[Call] = []
        self.refused: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    # ------------------------------------------------------------ set-up

    def on(self, action: str, handler: Handler) -> None:
        self.handlers[action] = handler

    def validate_with(self, service: str, validator: Validator) -> None:
        """Check every request to `service` with `validator(action, params)`, which raises
        TencentCloudError for one the product would refuse."""
        self.validators[service] = validator

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        """Settings that point the app's Tencent Cloud clients here."""
        return {
            "TENCENTCLOUD_SECRET_ID": self.secret_id,
            "TENCENTCLOUD_SECRET_KEY": self.secret_key,
            "TENCENTCLOUD_API_ENDPOINT": self.endpoint,
        }

    def calls_of(self, action: str) -> list[Call]:
        with self._lock:
            return [c for c in self.calls if c.action == action]

    def handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class _Handler(BaseHTTPRequestHandler):
            def log_message(self, *_args: Any) -> None:  # keep test output clean
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                status, reply = fake._handle(dict(self.headers.items()), body)
                data = json.dumps(reply).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        return _Handler

    # ------------------------------------------------------------ protocol

    def _error(
        self, code: str, message: str, headers: dict[str, str]
    ) -> tuple[int, dict[str, Any]]:
        with self._lock:
            self.refused.append({"code": code, "action": headers.get("X-TC-Action")})
        return self._answer({"Error": {"Code": code, "Message": message}})

    @staticmethod
    def _answer(response: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        # The API answers 200 even for errors; the SDK reads Response.Error.
        return 200, {"Response": {**response, "RequestId": secrets.token_hex(16)}}

    def _handle(self, raw_headers: dict[str, str], body: bytes) -> tuple[int, dict[str, Any]]:
        headers = {k.title(): v for k, v in raw_headers.items()}
        headers = {k.replace("X-Tc-", "X-TC-"): v for k, v in headers.items()}
        found = _AUTH.match(headers.get("Authorization", ""))
        if not found or found["signed"] != "content-type;host":
            return self._error(
                "AuthFailure.InvalidAuthorization", "bad Authorization header", headers
            )
        if found["id"] != self.secret_id:
            return self._error("AuthFailure.SecretIdNotFound", "unknown SecretId", headers)
        timestamp = headers.get("X-TC-Timestamp", "")
        if not timestamp.isdigit() or abs(time.time() - int(timestamp)) > MAX_SKEW_S:
            return self._error("AuthFailure.SignatureExpire", "timestamp out of range", headers)
        date = datetime.fromtimestamp(int(timestamp), timezone.utc).strftime("%Y-%m-%d")
        if found["date"] != date:
            return self._error(
                "AuthFailure.InvalidAuthorization", "date does not match timestamp", headers
            )
        expected = tc3_signature(
            self.secret_key,
            service=found["service"],
            date=date,
            timestamp=timestamp,
            content_type=headers.get("Content-Type", ""),
            host=headers.get("Host", ""),
            body=body,
        )
        if not hmac.compare_digest(expected, found["sig"]):
            return self._error("AuthFailure.SignatureFailure", "signature mismatch", headers)
        action = headers.get("X-TC-Action", "")
        try:
            params = json.loads(body or b"{}")
        except ValueError:
            return self._error("InvalidParameter", "body is not JSON", headers)
        validator = self.validators.get(found["service"])
        if validator is not None:
            try:
                validator(action, params)
            except TencentCloudError as exc:
                return self._error(exc.code, exc.message, headers)
        handler = self.handlers.get(action)
        if handler is None:
            return self._error("InvalidAction", f"action {action} not found", headers)
        call = Call(
            action=action,
            service=found["service"],
            version=headers.get("X-TC-Version", ""),
            region=headers.get("X-TC-Region", ""),
            params=params,
            headers=headers,
        )
        with self._lock:
            self.calls.append(call)
        try:
            return self._answer(handler(params, call))
        except TencentCloudError as exc:
            return self._answer({"Error": {"Code": exc.code, "Message": exc.message}})


def sms_handler(failing: set[str] | None = None, refusing: dict[str, str] | None = None) -> Handler:
    """A `SendSms` that accepts every mainland number, except the ones in `failing` (refused
    for the number's daily limit) and in `refusing` (refused with the code it names)."""

    def send_sms(params: dict[str, Any], _call: Call) -> dict[str, Any]:
        for required in ("PhoneNumberSet", "SmsSdkAppId", "TemplateId"):
            if not params.get(required):
                raise TencentCloudError("MissingParameter", f"{required} is required")
        log_guard.remember(*(params.get("TemplateParamSet") or [])[:1])  # the code sent
        statuses = []
        for phone in params["PhoneNumberSet"]:
            refused = (refusing or {}).get(phone)
            if refused is None and phone in (failing or set()):
                refused = "LimitExceeded.PhoneNumberDailyLimit"
            ok = refused is None
            statuses.append(
                {
                    "SerialNo": secrets.token_hex(8),
                    "PhoneNumber": phone,
                    "Fee": 1 if ok else 0,
                    "SessionContext": "",
                    "Code": refused or "Ok",
                    "Message": "send success" if ok else "refused",
                    "IsoCode": "CN",
                }
            )
        return {"SendStatusSet": statuses}

    return send_sms
