"""COS's side of the wire in tests/fakes/cos.py: the requests' operation names, a refusal
and the `<Error>` that answers it, and the shape of every answer."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler

REGION = "ap-guangzhou"


class CosRefusal(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(code)
        self.status, self.code, self.message = status, code, message


def operation(method: str, key: str, query: Mapping[str, str], *, copying: bool = False) -> str:
    """COS's name for the request (the API's action names). `copying`: it carries
    `x-cos-copy-source`, which makes a PUT of an object a copy (tests/fakes/cos_copy.py)."""
    if key and copying and method == "PUT" and "acl" not in query:
        return "PutObjectCopy"
    if key:
        names = {"GET": "Get", "PUT": "Put", "HEAD": "Head", "DELETE": "Delete", "POST": "Post"}
        return f"{names.get(method, method)}Object" + ("ACL" if "acl" in query else "")
    if "lifecycle" in query:
        verb = {"GET": "Get", "PUT": "Put", "DELETE": "Delete"}.get(method, method)
        return f"{verb}BucketLifecycle"
    if "delete" in query and method == "POST":
        return "DeleteObjects"
    if "policy" in query:
        verb = {"GET": "Get", "PUT": "Put", "DELETE": "Delete"}.get(method, method)
        return f"{verb}BucketPolicy"
    names = {"GET": "ListObjects", "PUT": "PutBucket", "HEAD": "HeadBucket"}
    return names.get(method, f"{method}Bucket")


def default_code(status: int) -> str:
    return {500: "InternalError", 503: "ServiceUnavailable", 403: "AccessDenied"}.get(
        status, "InternalError"
    )


def send_error(request: BaseHTTPRequestHandler, refusal: CosRefusal, resource: str) -> None:
    """COS's `<Error>` answer for `refusal` of a request for `resource`."""
    request_id = secrets.token_hex(12)
    body = (
        "<?xml version='1.0' encoding='utf-8' ?>\n<Error>\n"
        f"\t<Code>{refusal.code}</Code>\n\t<Message>{refusal.message}</Message>\n"
        f"\t<Resource>{resource}</Resource>\n\t<RequestId>{request_id}</RequestId>\n"
        f"\t<TraceId>{secrets.token_hex(16)}</TraceId>\n</Error>"
    ).encode()
    headers = [("Content-Type", "application/xml"), ("x-cos-request-id", request_id)]
    send(request, refusal.status, headers, body)


def send(
    request: BaseHTTPRequestHandler,
    status: int,
    headers: list[tuple[str, str]],
    body: bytes,
) -> None:
    """An answer as COS gives it: `Server: tencent-cos`, an `x-cos-request-id`, no body to a
    HEAD."""
    request.send_response(status)
    request.send_header("Server", "tencent-cos")
    names = {name.lower() for name, _ in headers}
    if "x-cos-request-id" not in names:
        request.send_header("x-cos-request-id", secrets.token_hex(12))
    for name, value in headers:
        if request.command == "HEAD" or name.lower() != "content-length":
            request.send_header(name, value)
    if request.command != "HEAD":
        request.send_header("Content-Length", str(len(body)))
    request.end_headers()
    if request.command != "HEAD":
        request.wfile.write(body)
