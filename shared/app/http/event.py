"""SCF Function URL event <-> Request / answer: the only place that knows the event's shape.
A new front door would be a new module like this one, not a new router.

The event an event function gets from its Function URL (or from the custom domain in front
of it): `httpMethod`, `path` (the whole path: the domain routes by path and passes it
through), `headers` (lower-case names), `queryString` (`{name: value}`, a list for a name
given more than once) and `body` (a string). The client's address is the
`x-scf-remote-addr` header, which the platform sets; nothing the client sends
(`X-Forwarded-For`, ...) is taken for it. A `body` that arrives as JSON already parsed (an
object, an array, a number: not the documented shape, but one a front door that decodes
JSON bodies builds) is written back as JSON text, so that its size limit and the route's
validation judge it as they judge text. The request id is the invocation's, from the
context. Path parameters come from our own routing.

The answer is SCF's standard payload, `{"statusCode", "headers", "body"}`, with the body as
text; a body that is not UTF-8 is sent base64 with `isBase64Encoded: true`.
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
from collections.abc import Mapping
from typing import Any

from app.errors import AppError, ErrorCode
from app.http.request import Headers, Request
from app.http.response import Response

CLIENT_ADDRESS = "x-scf-remote-addr"


def _text(value: Any, where: str) -> str:
    """`value` as text that encodes to UTF-8: the event is JSON, whose escapes can carry a
    lone surrogate that nothing downstream (the driver, the token library) can encode."""
    text = str(value)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise AppError(
            ErrorCode.VALIDATION_ERROR,
            "The request holds text that is not valid Unicode.",
            details=[{"loc": [where], "msg": "not valid Unicode"}],
        ) from exc
    return text


def _query(event: Mapping[str, Any]) -> dict[str, list[str]]:
    query: dict[str, list[str]] = {}
    for key, value in (event.get("queryString") or {}).items():
        values = value if isinstance(value, list) else [value]
        if values:  # a name listed with no value is not given: every name kept has one
            query[_text(key, "query")] = ["" if v is None else _text(v, "query") for v in values]
    return query


def _headers(event: Mapping[str, Any]) -> Headers:
    raw = event.get("headers")
    if isinstance(raw, Mapping):
        for name, value in raw.items():
            _text(name, "header")
            _text(value, "header")
    return Headers(raw)


def _parsed_text(body: Any) -> str:
    """A body the event holds as parsed JSON, as compact JSON text. Raises ValueError for
    one no JSON text can carry (`NaN`, which Python's JSON reader accepts, or something
    that is not JSON at all) and RecursionError for one nested too deep to write."""
    try:
        return json.dumps(body, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    except TypeError as exc:
        raise ValueError(str(exc)) from exc


def _body(event: Mapping[str, Any]) -> bytes:
    body = event.get("body")
    if body is None or body == "":
        return b""
    # Not in the documented event; handled in case a binary body ever arrives this way.
    if event.get("isBase64Encoded"):
        try:
            return base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError, TypeError) as exc:
            raise AppError(
                ErrorCode.VALIDATION_ERROR,
                "The body is not valid base64.",
                details=[{"loc": ["body"], "msg": "invalid base64"}],
            ) from exc
    if isinstance(body, (bytes, bytearray)):
        return bytes(body)
    if not isinstance(body, str):
        try:
            body = _parsed_text(body)
        except (ValueError, RecursionError) as exc:
            raise AppError(
                ErrorCode.VALIDATION_ERROR,
                "The body is not valid JSON.",
                details=[{"loc": ["body"], "msg": "not valid JSON"}],
            ) from exc
    return _text(body, "body").encode("utf-8")


def body_size(event: Mapping[str, Any]) -> int:
    """How many bytes the body is, read before anything else in the event is judged (its
    text, its base64): a body over the limit is `413` whatever else is wrong with it. A
    base64 body counts the bytes its length decodes to; one given as parsed JSON, the bytes
    of its compact JSON text."""
    body = event.get("body")
    if body is None or body == "":
        return 0
    if isinstance(body, (bytes, bytearray)):
        return len(body)
    if not isinstance(body, str):
        if event.get("isBase64Encoded"):
            return 0  # no base64 text: parse_event refuses it
        try:
            body = _parsed_text(body)
        except (ValueError, RecursionError):
            return 0  # not JSON: parse_event refuses it
    elif event.get("isBase64Encoded"):
        return len(body.rstrip("=")) * 3 // 4
    # surrogatepass: a lone surrogate is judged later; here it only takes its bytes.
    return len(body.encode("utf-8", "surrogatepass"))


def _header_of(event: Mapping[str, Any], wanted: str) -> str | None:
    """One header's value read from the event itself, so that an answer given before the
    request is parsed (or to one that cannot be) can use it; None when absent or not valid
    text."""
    headers = event.get("headers")
    if not isinstance(headers, Mapping):
        return None
    for name, value in headers.items():
        if str(name).lower() == wanted and isinstance(value, str):
            try:
                return _text(value, "header")
            except AppError:
                return None
    return None


def origin_of(event: Mapping[str, Any]) -> str | None:
    """The request's `Origin`: an answer refused before the rest is read (a 413) or because it
    cannot be (a 422) has its CORS headers too."""
    return _header_of(event, "origin")


def client_address_of(event: Mapping[str, Any]) -> str:
    """The client's address as the platform gives it, "" when it does not: the invocation's
    log line names it for every request, those refused before they are parsed included."""
    return _header_of(event, CLIENT_ADDRESS) or ""


def request_id_of(context: Mapping[str, Any]) -> str:
    return str(context.get("request_id") or secrets.token_hex(16))


def parse_event(event: Mapping[str, Any], request_id: str) -> Request[Any, Any]:
    """The event as a Request with the id `request_id_of` gave it (read before parsing, so
    that a request that fails to parse is answered under the same id)."""
    headers = _headers(event)
    return Request(
        method=_text(event.get("httpMethod") or "GET", "method").upper(),
        path=_text(event.get("path") or "/", "path"),
        headers=headers,
        query_params=_query(event),
        raw_body=_body(event),
        path_params={},
        source_ip=client_address_of(event),
        request_id=request_id,
    )


def answer(response: Response) -> dict[str, Any]:
    headers = dict(response.headers)
    if response.content_type:
        headers["Content-Type"] = response.content_type
    payload: dict[str, Any] = {"statusCode": response.status, "headers": headers}
    if isinstance(response.body, str):
        payload["body"] = response.body
        return payload
    try:
        payload["body"] = response.body.decode("utf-8")
    except UnicodeDecodeError:
        payload["isBase64Encoded"] = True
        payload["body"] = base64.b64encode(response.body).decode("ascii")
    return payload
