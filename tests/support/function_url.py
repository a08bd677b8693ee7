"""SCF Function URL events for tests, and a small view of the answers functions give."""

from __future__ import annotations

import base64
import json
import secrets
from dataclasses import dataclass
from typing import Any

from tests.support import log_guard

SECRETS_PATH = "/admin/secrets/"  # PUT /admin/secrets/{name}: API.md


def event(
    method: str,
    path: str,
    *,
    body: Any = None,
    raw_body: str | bytes | None = None,
    headers: dict[str, str] | None = None,
    query: dict[str, Any] | None = None,
    base64_body: bool = False,
    source_ip: str = "203.0.113.9",
    token: str | None = None,
) -> dict[str, Any]:
    """An event shaped like the one a Function URL sends an event function: lower-case
    header names, the client's address in `x-scf-remote-addr`."""
    hdrs = {"host": "api.example.com", "user-agent": "pytest", "x-scf-remote-addr": source_ip}
    if method == "PUT" and path.startswith(SECRETS_PATH) and isinstance(body, dict):
        # The one way a value enters the vault: no log line may hold it from now on.
        log_guard.remember_stored(body.get("value"))
    if body is not None:
        raw_body = json.dumps(body)
        hdrs["content-type"] = "application/json"
    if token:
        hdrs["authorization"] = f"Bearer {token}"
    hdrs.update({key.lower(): value for key, value in (headers or {}).items()})
    payload: str | None
    if raw_body is None:
        payload = None
    elif base64_body:
        data = raw_body.encode() if isinstance(raw_body, str) else raw_body
        payload = base64.b64encode(data).decode()
    else:
        payload = raw_body.decode() if isinstance(raw_body, bytes) else raw_body
    found: dict[str, Any] = {
        "httpMethod": method,
        "path": path,
        "headers": hdrs,
        "queryString": query or {},
        "body": payload,
    }
    if base64_body:
        found["isBase64Encoded"] = True
    return found


def context(
    function_name: str = "test", request_id: str | None = None, time_limit_ms: int = 10000
) -> dict[str, Any]:
    """The context SCF gives an invocation; `time_limit_ms`: the function's timeout."""
    return {
        "request_id": request_id or secrets.token_hex(16),
        "function_name": function_name,
        "memory_limit_in_mb": 256,
        "time_limit_in_ms": time_limit_ms,
    }


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: str

    def json(self) -> Any:
        return json.loads(self.body)

    def header(self, name: str) -> str | None:
        for key, value in self.headers.items():
            if key.lower() == name.lower():
                return value
        return None


def reply_of(result: dict[str, Any]) -> Reply:
    body = result["body"]
    if result.get("isBase64Encoded"):
        body = base64.b64decode(body).decode("latin-1")
    return Reply(result["statusCode"], result["headers"], body)


def call(
    handler: Any, method: str, path: str, *, time_limit_ms: int = 10000, **kwargs: Any
) -> Reply:
    """Invoke a main_handler with a Function URL event and read its answer; the platform
    ends the invocation `time_limit_ms` after it starts."""
    return reply_of(handler(event(method, path, **kwargs), context(time_limit_ms=time_limit_ms)))
