"""Tencent API Gateway events for tests, and a small view of integration responses."""

from __future__ import annotations

import base64
import json
import secrets
from dataclasses import dataclass
from typing import Any


def event(
    method: str,
    path: str,
    *,
    body: Any = None,
    raw_body: str | bytes | None = None,
    headers: dict[str, str] | None = None,
    query: dict[str, Any] | None = None,
    path_params: dict[str, str] | None = None,
    base64_body: bool = False,
    source_ip: str = "203.0.113.9",
    token: str | None = None,
) -> dict[str, Any]:
    """An event shaped like the one API Gateway sends an event function."""
    hdrs = {"Host": "service-test.gz.apigw.tencentcs.com", "User-Agent": "pytest"}
    if body is not None:
        raw_body = json.dumps(body)
        hdrs["Content-Type"] = "application/json"
    if token:
        hdrs["Authorization"] = f"Bearer {token}"
    hdrs.update(headers or {})
    payload: str | None
    if raw_body is None:
        payload = None
    elif base64_body:
        data = raw_body.encode() if isinstance(raw_body, str) else raw_body
        payload = base64.b64encode(data).decode()
    else:
        payload = raw_body.decode() if isinstance(raw_body, bytes) else raw_body
    return {
        "httpMethod": method,
        "path": path,
        "headers": hdrs,
        "queryString": query or {},
        "queryStringParameters": {},
        "pathParameters": path_params or {},
        "headerParameters": {},
        "stageVariables": {"stage": "release"},
        "body": payload,
        "isBase64Encoded": base64_body,
        "requestContext": {
            "serviceId": "service-test",
            "path": path,
            "httpMethod": method,
            "requestId": secrets.token_hex(16),
            "identity": {},
            "sourceIp": source_ip,
            "stage": "release",
        },
    }


def context(function_name: str = "test") -> dict[str, Any]:
    return {
        "request_id": secrets.token_hex(16),
        "function_name": function_name,
        "memory_limit_in_mb": 256,
        "time_limit_in_ms": 10000,
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


def call(handler: Any, method: str, path: str, **kwargs: Any) -> Reply:
    """Invoke a main_handler with an API Gateway event and read its integration response."""
    result = handler(event(method, path, **kwargs), context())
    body = result["body"]
    if result.get("isBase64Encoded"):
        body = base64.b64decode(body).decode("latin-1")
    return Reply(result["statusCode"], result["headers"], body)
