"""Malformed requests for every route: what a client can send that is wrong, built from the
route's own declarations (its body and query models, its path parameters, its auth level),
so that a new route is covered as soon as a function serves it.

Everything is drawn from a `random.Random` seeded by the caller and the route, so a run is
the same requests every time. Bodies are JSON text written by hand, not by `json.dumps`: a
client can send what Python would never write (`1e309`, `-0`, a lone surrogate escaped as
`\\ud800`, a key given twice, nesting deeper than any parser's stack).
"""

from __future__ import annotations

import base64
import json
import random
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from app.config import get_settings
from app.http.routing import Route

# JSON values as text, each wrong for most fields somewhere.
ODD_VALUES = (
    "null", "true", "false", "0", "-0", "-0.0", "-1", "1.5", "1e309", "-1e309", "1e-400",
    str(2**70), str(-(2**70)), "9" * 400, '""', '" "', '"\\u0000"', '"a\\u0000b"',
    '"\\ud800"', '"x\\udfffy"', '"\\u202eevil"', '"\\u200b"', '"\\n"', '"%00"', '"../x"',
    '"1e309"', '"-1"', '"NaN"', "NaN", "Infinity", '"' + "x" * 70_000 + '"', "[]", "{}",
    "[null]", '{"":null}', "[" * 2_000 + "]" * 2_000, '{"a":' * 2_000 + "1" + "}" * 2_000,
    '"2026-13-45T25:61:00Z"', '"😀"', '"\\ud83d\\ude00"', '{"$gt":""}',
)  # fmt: skip
WHOLE_BODIES = (
    "", " ", "not json", "{", "}", "[]", "null", "1", '"text"', "{}", "{,}", '{"a"}',
    "\ufeff{}", "{}{}", "[" * 100_000, '{"a":1}' + "x", "\x00", '"\\ud800"', "NaN",
)  # fmt: skip
ODD_PATH_PARTS = (
    "%00", "%2F", "%2f..%2f", "%0A", "%0D%0A", "%", "%zz", "%C0%AE", "%FF", "\x00", "\n",
    " ", "..", ".", "a" * 5_000, "ü", "😀", "\u202e", "\ud800", "'", '"', "\\", "<x>",
    "{id}", "*", "0", "-1", "1e309", str(2**70), "null",
)  # fmt: skip
ODD_QUERY_VALUES = (
    "", " ", "0", "-1", "-0", "1.5", "1e309", str(2**70), "9" * 400, "x" * 10_000, "\x00",
    "\ud800", "\u202e", "null", "true", "[]", "%00", "😀",
)  # fmt: skip
ODD_IDEMPOTENCY_KEYS = (
    "", " ", "\t", "x" * 256, "x" * 10_000, "\x00", "a\nb", "\u202e", "é", "😀", "\ud800",
)  # fmt: skip
CONTENT_TYPES = (
    "text/plain", "application/json; charset=latin-1", "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x", "application/xml", ";;;", "\x00", "",
)  # fmt: skip
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "FOO", "get", "")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _jwt(header: dict[str, Any] | str, claims: dict[str, Any] | str, key: bytes) -> str:
    """A JWT with any header and claims, signed HS256 with `key` (what a forger holding a
    guessed key, or the right one with wrong claims, would send)."""
    import hashlib  # only forged tokens need it
    import hmac

    def part(value: dict[str, Any] | str) -> str:
        return _b64((value if isinstance(value, str) else json.dumps(value)).encode())

    signing = f"{part(header)}.{part(claims)}"
    signature = hmac.new(key, signing.encode(), hashlib.sha256).digest()
    return f"{signing}.{_b64(signature)}"


def odd_authorizations(valid: str, user_id: str) -> list[str]:
    """Authorization headers that must all be refused as 401 (or 403 for a user's token)."""
    settings = get_settings()
    key = settings.jwt_secret.get_secret_value().encode()
    now = int(time.time())
    good = {
        "sub": user_id, "iss": settings.jwt_issuer, "aud": settings.jwt_audience,
        "iat": now, "exp": now + 600, "typ": "access", "sid": "s", "jti": "j", "role": "admin",
    }  # fmt: skip
    hs = {"alg": "HS256", "typ": "JWT"}
    return [
        "",
        " ",
        "Bearer",
        "Bearer ",
        "Basic dXNlcjpwYXNz",
        "Digest x",
        "Token " + valid,
        "Bearer  " + valid + " extra",
        "bearer" + valid,
        "Bearer x.y.z",
        "Bearer a.b",
        "Bearer ....",
        "Bearer " + "a" * 100_000,
        "Bearer \x00",
        "Bearer \ud800",
        "Bearer " + valid[:-3] + "abc",
        "Bearer " + valid.upper(),
        "Bearer " + _jwt({"alg": "none", "typ": "JWT"}, good, b"").rsplit(".", 1)[0] + ".",
        "Bearer " + _jwt(hs, {**good, "exp": now - 10}, key),
        "Bearer " + _jwt(hs, {**good, "exp": "soon"}, key),
        "Bearer " + _jwt(hs, {**good, "exp": 1e308}, key),
        "Bearer " + _jwt(hs, {**good, "exp": 2**70}, key),
        "Bearer " + _jwt(hs, {**good, "sub": 12}, key),
        "Bearer " + _jwt(hs, {**good, "sub": None}, key),
        "Bearer " + _jwt(hs, {**good, "sub": "x" * 5_000}, key),
        "Bearer " + _jwt(hs, {**good, "sid": ["a"]}, key),
        "Bearer " + _jwt(hs, {**good, "sid": "{brace}"}, key),
        "Bearer " + _jwt(hs, {**good, "typ": "refresh"}, key),
        "Bearer " + _jwt(hs, {**good, "role": {"a": 1}}, key),
        "Bearer " + _jwt(hs, {**good, "iat": "x", "nbf": "y"}, key),
        "Bearer " + _jwt(hs, "[1,2]", key),
        "Bearer " + _jwt(hs, "not json", key),
        "Bearer " + _jwt({"alg": "HS256", "kid": "../../x", "crit": ["x"]}, good, key),
        "Bearer " + _jwt("[]", good, key),
        "Bearer " + _jwt('{"kid":' + "[" * 5_000 + "]" * 5_000 + "}", good, b"guessed"),
        "Bearer " + _jwt(hs, good, b"guessed"),
    ]


@dataclass
class Probe:
    """One request: what the event carries, and what it is for (shown on a failure)."""

    what: str
    method: str
    path: str
    raw_body: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    query: dict[str, Any] = field(default_factory=dict)
    base64_body: bool = False


def _resolve(schema: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = defs[schema["$ref"].rsplit("/", 1)[-1]]
    for choice in schema.get("anyOf", ()):  # `X | None`: the X
        if choice.get("type") != "null":
            return _resolve(choice, defs)
    return schema


def plausible(schema: dict[str, Any], defs: dict[str, Any], depth: int = 0) -> str:
    """JSON text of a value that fits `schema` as far as a quick guess goes: the baseline a
    single odd field is put into, so that the other fields pass and the odd one is judged."""
    schema = _resolve(schema, defs)
    if "enum" in schema:
        return json.dumps(schema["enum"][0])
    if "const" in schema:
        return json.dumps(schema["const"])
    if "default" in schema and schema["default"] is not None:
        return json.dumps(schema["default"])
    kind = schema.get("type")
    if kind == "object" and depth < 3:
        props = schema.get("properties", {})
        parts = [f"{json.dumps(k)}:{plausible(v, defs, depth + 1)}" for k, v in props.items()]
        return "{" + ",".join(parts) + "}"
    if kind == "array":
        item = schema.get("items")
        count = max(1, schema.get("minItems", 1))
        return "[" + ",".join([plausible(item, defs, depth + 1)] * count) + "]" if item else "[]"
    if kind == "integer":
        return str(max(1, schema.get("minimum", 1)))
    if kind == "number":
        return "1"
    if kind == "boolean":
        return "true"
    if kind == "string":
        return json.dumps("fuzz-" + "x" * max(0, schema.get("minLength", 0) - 5))
    return "{}"


def _body_probes(
    route: Route, rng: random.Random, per_field: int, valid: dict[str, Any] | None
) -> Iterator[str]:
    """Bodies with one thing wrong each: `valid` (a body the route takes, else a guess from
    its model) with one field, or one field of a nested object, given an odd value, left
    out or given twice; then bodies wrong as a whole."""
    assert route.body is not None
    if valid is None:
        schema = route.body.model_json_schema()
        valid = json.loads(plausible(schema, schema.get("$defs", {})))
    base = {name: json.dumps(value) for name, value in valid.items()}

    def obj(fields: dict[str, str]) -> str:
        return "{" + ",".join(f"{json.dumps(k)}:{v}" for k, v in fields.items()) + "}"

    def odd() -> list[str]:
        return rng.sample(ODD_VALUES, min(per_field, len(ODD_VALUES)))

    yield obj(base)
    for name, value in valid.items():
        for text in odd():
            yield obj({**base, name: text})
        yield obj({k: v for k, v in base.items() if k != name})  # the field left out
        yield obj(base)[:-1] + f",{json.dumps(name)}:{rng.choice(ODD_VALUES)}}}"  # twice
        inner = value[0] if isinstance(value, list) and value else value
        if isinstance(inner, dict):
            nested = {key: json.dumps(item) for key, item in inner.items()}
            for key in nested:
                for text in odd()[:2]:
                    changed = obj({**nested, key: text})
                    yield obj({**base, name: f"[{changed}]" if inner is not value else changed})
    yield obj({**base, "extra\x00": "1", "__proto__": "{}", "x" * 1_000: "[]"})
    yield from WHOLE_BODIES


def _path_for(route: Route, fill: dict[str, str], part: str | None = None) -> str:
    path = route.path
    for name in _params(route):
        path = path.replace("{" + name + "}", part if part is not None else fill.get(name, "x"))
    return path


def _params(route: Route) -> list[str]:
    return [seg[1:-1] for seg in route.path.split("/") if seg.startswith("{")]


def probes(
    route: Route,
    seed: int,
    *,
    per_field: int,
    fill: dict[str, str],
    authorizations: list[str],
    valid_body: dict[str, Any] | None = None,
) -> Iterator[Probe]:
    """The malformed requests for `route`. `fill` gives path parameters a real value (an
    entity that exists, so that the rest of the request is judged past the 404);
    `authorizations`, the odd Authorization headers to try on a route that needs a token;
    `valid_body`, a body the route takes, which the odd bodies change one field at a time."""
    rng = random.Random(seed ^ zlib.crc32(f"{route.method} {route.path}".encode()))
    path = _path_for(route, fill)
    method = route.method
    yield Probe("as declared", method, path, json.dumps(valid_body) if valid_body else None)
    if route.body is not None:
        for text in _body_probes(route, rng, per_field, valid_body):
            yield Probe(f"body {text[:80]!r}", method, path, raw_body=text)
        for content_type in CONTENT_TYPES:
            headers = {"content-type": content_type}
            yield Probe(f"content-type {content_type!r}", method, path, "{}", headers)
    else:
        yield Probe("unexpected body", method, path, rng.choice(WHOLE_BODIES + ODD_VALUES))
    yield Probe("non-UTF-8 body", method, path, _b64(b"\xff\xfe\x00{"), base64_body=True)
    yield Probe("bad base64 body", method, path, "!!!", base64_body=True)
    for part in ODD_PATH_PARTS if _params(route) else ():
        yield Probe(f"path {part[:40]!r}", method, _path_for(route, fill, part))
    yield Probe("trailing slash", method, path + "/")
    yield Probe("double slash", method, path.replace("/", "//", 1))
    if route.query is not None:
        for name, info in route.query.model_fields.items():
            key = info.alias or name
            for value in rng.sample(ODD_QUERY_VALUES, min(per_field, len(ODD_QUERY_VALUES))):
                yield Probe(f"query {key}={value[:40]!r}", method, path, query={key: value})
            yield Probe(f"query {key} repeated", method, path, query={key: ["1", "", "-1"]})
            yield Probe(f"query {key} empty list", method, path, query={key: []})
            yield Probe(f"query {key} null", method, path, query={key: None})
    yield Probe("unknown query", method, path, query={"\ud800": "x", "a" * 5000: "\x00"})
    if route.idempotency_key:
        for key in ODD_IDEMPOTENCY_KEYS:
            headers = {"idempotency-key": key}
            yield Probe(f"idempotency-key {key[:40]!r}", method, path, "{}", headers)
    for auth in authorizations if route.auth.value in ("user", "admin", "metrics") else ():
        yield Probe(f"authorization {auth[:60]!r}", method, path, headers={"authorization": auth})
    for other in METHODS:
        if other != method:
            yield Probe(f"method {other!r}", other, path)
    yield Probe("odd headers", method, path, headers={"\ud800": "x", "x-odd": "\ud800"})
