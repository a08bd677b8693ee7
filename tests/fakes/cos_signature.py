"""The signature check of tests/fakes/cos.py, as COS makes it.

- The signature (`q-sign-algorithm=sha1&q-ak=...&q-sign-time=...&q-key-time=...&q-header-list=...
  &q-url-param-list=...&q-signature=...`), from the `Authorization` header or from a
  presigned URL's query, is recomputed with the secret key over the method, the key's path,
  the listed parameters and headers (each name lower-cased, names and values URL-encoded
  with `-_.~` kept), as qcloud_cos/cos_auth.py builds it: a mismatch, a listed header or
  parameter that is missing, another SecretId or algorithm is 403 `SignatureDoesNotMatch`
  (`InvalidAccessKeyId` for an unknown SecretId); a request outside its q-sign-time or
  q-key-time is 403 `AccessDenied` "Request has expired"; no signature at all is 403
  `AccessDenied`. So a presigned PUT sent with another Content-Type or Content-Length is
  refused. With `session_token=`, every request must also carry that token
  (`x-cos-security-token`, a header or a presigned URL's parameter).
- The signed `host` is compared without a port: the SDK signs `urlparse(url).hostname`,
  and COS is never reached on a port of its own.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from urllib.parse import quote, unquote

from tests.fakes.cos_wire import CosRefusal

SIGN_FIELDS = (
    "q-sign-algorithm",
    "q-ak",
    "q-sign-time",
    "q-key-time",
    "q-header-list",
    "q-url-param-list",
    "q-signature",
)


def _enc(text: str) -> str:
    return quote(text.encode(), safe="-_.~")


def cos_signature(
    secret_key: str,
    *,
    method: str,
    path: str,
    params: Mapping[str, str],
    headers: Mapping[str, str],
    sign_time: str,
    key_time: str,
) -> str:
    """COS's request signature (XML API, "sha1"): `path` is the key's path as a plain string
    (`/` for the bucket), `params` and `headers` only those that are signed."""
    pairs = {_enc(k).lower(): _enc(v) for k, v in params.items()}
    fields = {_enc(k).lower(): _enc(v) for k, v in headers.items()}
    http_string = "{}\n{}\n{}\n{}\n".format(
        method.lower(),
        path,
        "&".join(f"{k}={v}" for k, v in sorted(pairs.items())),
        "&".join(f"{k}={v}" for k, v in sorted(fields.items())),
    )
    sign_key = hmac.new(secret_key.encode(), key_time.encode(), hashlib.sha1).hexdigest()
    digest = hashlib.sha1(http_string.encode()).hexdigest()
    string_to_sign = f"sha1\n{sign_time}\n{digest}\n"
    return hmac.new(sign_key.encode(), string_to_sign.encode(), hashlib.sha1).hexdigest()


def authenticate(
    headers: Mapping[str, str],
    method: str,
    key: str,
    query: Mapping[str, str],
    *,
    secret_id: str,
    secret_key: str,
    session_token: str | None,
    now: float,
    public: bool,
) -> None:
    """CosRefusal unless the request (its headers, method, key and query) is signed with
    `secret_key` for `secret_id` at `now` (and carries `session_token` when there is one),
    or is `public`: a read of an object its ACL lets anyone read, which needs no signature."""
    authorization = headers.get("Authorization", "")
    if authorization.startswith("q-sign-algorithm="):
        fields = dict(part.split("=", 1) for part in authorization.split("&") if "=" in part)
    elif "q-sign-algorithm" in query:
        fields = {name: query[name] for name in SIGN_FIELDS if name in query}
    elif public:
        return  # anyone may read an object its ACL makes public
    else:
        raise CosRefusal(403, "AccessDenied", "Access Denied.")
    mismatch = CosRefusal(
        403, "SignatureDoesNotMatch", "The Signature you specified does not match."
    )
    if any(name not in fields for name in SIGN_FIELDS) or fields["q-sign-algorithm"] != "sha1":
        raise mismatch
    if fields["q-ak"] != secret_id:
        raise CosRefusal(403, "InvalidAccessKeyId", "The SecretId is not known.")
    for window in (fields["q-sign-time"], fields["q-key-time"]):
        try:
            start, end = (int(t) for t in window.split(";"))
        except ValueError:
            raise mismatch from None
        if not start <= now <= end:
            raise CosRefusal(403, "AccessDenied", "Request has expired")
    lower = {name.lower(): value for name, value in headers.items()}
    signed: dict[str, str] = {}
    for name in filter(None, fields["q-header-list"].split(";")):
        value = lower.get(unquote(name))
        if value is None:
            raise mismatch
        if name == "host":
            value = re.sub(r":\d+$", "", value)
        signed[name] = value
    params: dict[str, str] = {}
    lower_query = {name.lower(): value for name, value in query.items()}
    for name in filter(None, fields["q-url-param-list"].split(";")):
        if unquote(name) not in lower_query:
            raise mismatch
        params[name] = lower_query[unquote(name)]
    expected = cos_signature(
        secret_key,
        method=method,
        path="/" + key,
        params=params,
        headers=signed,
        sign_time=fields["q-sign-time"],
        key_time=fields["q-key-time"],
    )
    if not hmac.compare_digest(expected, fields["q-signature"]):
        raise mismatch
    if session_token is not None:
        token = lower.get("x-cos-security-token") or query.get("x-cos-security-token")
        if token != session_token:
            raise CosRefusal(403, "InvalidAccessKeyId", "The security token is invalid.")
