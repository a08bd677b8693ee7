"""Tencent API Gateway event <-> Request / integration response. The only place that knows
the event's shape; a new platform would be a new module like this one, not a new router."""

from __future__ import annotations

import base64
import binascii
import secrets
from collections.abc import Mapping
from typing import Any

from app.errors import AppError, ErrorCode
from app.http.request import Headers, Request
from app.http.response import Response


def _query(event: Mapping[str, Any]) -> dict[str, list[str]]:
    # `queryString` holds the whole query; `queryStringParameters` only the parameters
    # configured on the API. Read the first, fall back to the second.
    raw = event.get("queryString") or event.get("queryStringParameters") or {}
    query: dict[str, list[str]] = {}
    for key, value in raw.items():
        values = value if isinstance(value, list) else [value]
        query[str(key)] = ["" if v is None else str(v) for v in values]
    return query


def _body(event: Mapping[str, Any]) -> bytes:
    body = event.get("body")
    if body is None or body == "":
        return b""
    if event.get("isBase64Encoded"):
        try:
            return base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError, TypeError) as exc:
            raise AppError(
                ErrorCode.VALIDATION_ERROR,
                "The body is not valid base64.",
                details=[{"loc": ["body"], "msg": "invalid base64"}],
            ) from exc
    return body.encode("utf-8") if isinstance(body, str) else bytes(body)


def request_id_of(event: Mapping[str, Any], context: Mapping[str, Any] | None) -> str:
    ctx = event.get("requestContext") or {}
    return str(ctx.get("requestId") or (context or {}).get("request_id") or secrets.token_hex(16))


def parse_event(event: Mapping[str, Any], request_id: str) -> Request[Any, Any]:
    """The event as a Request with the id `request_id_of` gave it (read before parsing, so
    that a request that fails to parse is answered under the same id)."""
    ctx = event.get("requestContext") or {}
    headers = Headers(event.get("headers"))
    source_ip = str(ctx.get("sourceIp") or headers.get("x-forwarded-for", "").split(",")[0].strip())
    return Request(
        method=str(event.get("httpMethod") or ctx.get("httpMethod") or "GET").upper(),
        path=str(event.get("path") or "/"),
        headers=headers,
        query_params=_query(event),
        raw_body=_body(event),
        path_params={str(k): str(v) for k, v in (event.get("pathParameters") or {}).items()},
        source_ip=source_ip,
        request_id=request_id,
    )


def integration_response(response: Response) -> dict[str, Any]:
    headers = dict(response.headers)
    if response.content_type:
        headers["Content-Type"] = response.content_type
    body, is_base64 = response.body, False
    if isinstance(response.body, bytes):
        try:
            body = response.body.decode("utf-8")
        except UnicodeDecodeError:
            body, is_base64 = base64.b64encode(response.body).decode("ascii"), True
    return {
        "isBase64Encoded": is_base64,
        "statusCode": response.status,
        "headers": headers,
        "body": body,
    }
