"""The Function URL event adapter: bodies, headers, query strings, path parameters, request
ids, CORS, and every kind of bad input ending as a 4xx in the error envelope (422, or 413 for
a body too large), never a 500."""

from __future__ import annotations

import base64
import json
from enum import Enum
from typing import Any

import pytest
from pydantic import BaseModel, Field

from app.http import Auth, Request, Response, Router, http_handler
from tests.support.function_url import Reply, call, context, event, reply_of
from tests.support.settings import settings_env

router = Router(tags=("test",))
PNG_BYTES = b"\x89PNG\r\n\x1a\n\x00\xff\xfe"


class Colour(str, Enum):
    red = "red"
    blue = "blue"


class ItemIn(BaseModel):
    name: str = Field(min_length=1, max_length=20)
    count: int
    colour: Colour = Colour.red


class ItemQuery(BaseModel):
    tag: list[str] = []
    limit: int = Field(20, ge=1, le=100)
    colour: Colour | None = None
    q: str | None = None


@router.post("/items", auth=Auth.PUBLIC, body=ItemIn, status=201)
def create_item(req: Request[ItemIn, None]) -> dict[str, Any]:
    return {"name": req.body.name, "count": req.body.count, "colour": req.body.colour.value}


@router.get("/items", auth=Auth.PUBLIC, query=ItemQuery)
def list_items(req: Request[None, ItemQuery]) -> dict[str, Any]:
    return {**req.query.model_dump(mode="json"), "raw": req.query_params}


@router.get("/echo", auth=Auth.PUBLIC)
def echo(req: Request[None, None]) -> dict[str, Any]:
    return {
        "authorization": req.headers.get("authorization"),
        "x_custom": req.headers.get("X-CUSTOM"),
        "has_auth": "AUTHORIZATION" in req.headers,
        "source_ip": req.source_ip,
        "request_id": req.request_id,
        "body": req.raw_body.decode("utf-8", "replace"),
    }


@router.get("/items/{item_id}/parts/{part}", auth=Auth.PUBLIC)
def get_part(req: Request[None, None]) -> dict[str, Any]:
    return dict(req.path_params)


@router.get("/me", auth=Auth.USER)
def me(req: Request[None, None]) -> dict[str, Any]:
    return {"user": req.user.user_id}


@router.get("/logo.png", auth=Auth.PUBLIC, content_type="image/png")
def logo(req: Request[None, None]) -> Response:
    return Response(200, PNG_BYTES, {}, "image/png")


handler = http_handler(create_item, list_items, echo, get_part, logo)


def assert_validation_error(reply: Any, *locs: list[Any]) -> list[dict[str, Any]]:
    assert reply.status == 422, reply.body
    body = reply.json()
    assert body["code"] == "VALIDATION_ERROR"
    assert body["request_id"] == reply.header("X-Request-Id")
    details = body["details"]
    assert isinstance(details, list) and details
    for detail in details:
        assert set(detail) == {"loc", "msg"}
        assert isinstance(detail["loc"], list) and isinstance(detail["msg"], str)
    for loc in locs:
        assert loc in [d["loc"] for d in details], details
    return details


# -- bodies ------------------------------------------------------------------------------


def test_plain_json_body_is_validated_into_the_model() -> None:
    reply = call(handler, "POST", "/items", body={"name": "pen", "count": 2, "colour": "blue"})
    assert reply.status == 201
    assert reply.json() == {"name": "pen", "count": 2, "colour": "blue"}


def test_base64_body_is_decoded() -> None:
    raw = json.dumps({"name": "笔", "count": 3}).encode("utf-8")
    reply = call(handler, "POST", "/items", raw_body=raw, base64_body=True)
    assert reply.status == 201
    assert reply.json() == {"name": "笔", "count": 3, "colour": "red"}


def test_invalid_base64_body_is_422() -> None:
    evt = event("POST", "/items", raw_body="ignored")
    evt["body"] = "not base64 at all!!"
    evt["isBase64Encoded"] = True
    result = handler(evt, context())
    assert result["statusCode"] == 422
    body = json.loads(result["body"])
    assert body["code"] == "VALIDATION_ERROR"
    assert body["details"] == [{"loc": ["body"], "msg": "invalid base64"}]


def test_malformed_json_is_422_with_details() -> None:
    reply = call(handler, "POST", "/items", raw_body='{"name": "pen", "count": ')
    details = assert_validation_error(reply, ["body"])
    assert "json" in details[0]["msg"].lower()


@pytest.mark.parametrize(
    "raw",
    [b"\xff\xfe\x00garbage", b"[1, 2, 3]", b'"a string"', b"null", b"[" * 5000],
    ids=["not-utf8", "array", "string", "null", "deeply-nested"],
)
def test_bodies_that_are_not_an_object_are_422(raw: bytes) -> None:
    reply = call(handler, "POST", "/items", raw_body=raw, base64_body=True)
    assert_validation_error(reply)


def test_wrong_types_are_422_naming_the_field() -> None:
    reply = call(handler, "POST", "/items", body={"name": "pen", "count": "many"})
    assert_validation_error(reply, ["body", "count"])


def test_unknown_enum_value_is_422() -> None:
    reply = call(handler, "POST", "/items", body={"name": "pen", "count": 1, "colour": "green"})
    assert_validation_error(reply, ["body", "colour"])


def test_missing_required_fields_are_each_named() -> None:
    reply = call(handler, "POST", "/items", body={})
    assert_validation_error(reply, ["body", "name"], ["body", "count"])


def test_missing_body_is_422_not_500() -> None:
    reply = call(handler, "POST", "/items")
    assert_validation_error(reply, ["body", "name"])


def _with_parsed_body(body: Any, **kwargs: Any) -> dict[str, Any]:
    """A Function URL event whose body is JSON already parsed rather than text, as a front
    door that decodes JSON bodies gives it."""
    evt = event("POST", "/items", body={"placeholder": True}, **kwargs)
    evt["body"] = body
    return evt


def test_a_body_given_as_parsed_json_is_validated_as_its_text() -> None:
    reply = reply_of(handler(_with_parsed_body({"name": "笔", "count": 2}), context()))
    assert reply.status == 201, reply.body
    assert reply.json() == {"name": "笔", "count": 2, "colour": "red"}
    wrong = reply_of(handler(_with_parsed_body({"name": "pen", "count": "many"}), context()))
    assert_validation_error(wrong, ["body", "count"])


@pytest.mark.parametrize(
    "body", [[1, 2], 1.5, 7, True, "", {}], ids=["array", "float", "int", "bool", "empty", "{}"]
)
def test_a_parsed_json_body_that_is_not_the_routes_object_is_422(body: Any) -> None:
    reply = reply_of(handler(_with_parsed_body(body), context()))
    assert_validation_error(reply)


def _nested(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize(
    ("body", "msg"),
    [
        ({"name": "pen", "count": float("nan")}, "not valid JSON"),
        (_nested(100_000), "not valid JSON"),
        ({"name": "pen\ud800", "count": 1}, "not valid Unicode"),
    ],
    ids=["nan", "too-deep", "lone-surrogate"],
)
def test_a_parsed_json_body_no_json_text_can_carry_is_422_naming_the_body(
    body: Any, msg: str
) -> None:
    """Python's JSON reader takes `NaN` and a lone surrogate's escape: neither can be
    written back as UTF-8 JSON text, and neither is a 500."""
    reply = reply_of(handler(_with_parsed_body(body), context()))
    assert_validation_error(reply, ["body"])
    assert reply.json()["details"] == [{"loc": ["body"], "msg": msg}]


def assert_too_large(reply: Reply, limit: int) -> None:
    assert reply.status == 413, reply.body
    body = reply.json()
    assert body["code"] == "PAYLOAD_TOO_LARGE"
    assert body["details"] == [{"loc": ["body"], "msg": f"at most {limit} bytes"}]


def test_an_oversize_body_is_413_before_anything_else_is_looked_at() -> None:
    with settings_env(MAX_BODY_BYTES="64"):
        small = http_handler(create_item, me)
    body = {"name": "pen", "count": 1, "colour": "red", "pad": "x" * 100}
    assert_too_large(call(small, "POST", "/items", body=body), 64)
    # Not even the credentials (none here) or the path (unknown here) are judged first.
    assert_too_large(call(small, "GET", "/me", raw_body="x" * 65), 64)
    assert_too_large(call(small, "POST", "/nowhere", raw_body="x" * 65), 64)
    # Just under the limit still passes.
    assert call(small, "POST", "/items", body={"name": "p", "count": 1}).status == 201


def test_a_parsed_json_body_is_413_by_the_size_of_its_json_text() -> None:
    with settings_env(MAX_BODY_BYTES="64"):
        small = http_handler(create_item)
    padded = {"name": "pen", "count": 1, "pad": "x" * 100}
    assert_too_large(reply_of(small(_with_parsed_body(padded), context())), 64)
    # Compact text is what counts: 64 bytes exactly still reach the route's validation.
    exact = {"name": "pen", "count": 1, "pad": ""}
    exact["pad"] = "x" * (64 - len(json.dumps(exact, separators=(",", ":"))))
    reply = reply_of(small(_with_parsed_body(exact), context()))
    assert reply.status == 201, reply.body


def test_an_oversize_base64_body_is_413_by_its_decoded_size() -> None:
    with settings_env(MAX_BODY_BYTES="64"):
        small = http_handler(create_item)
    raw = json.dumps({"name": "pen", "count": 1, "pad": "x" * 200})
    assert_too_large(call(small, "POST", "/items", raw_body=raw, base64_body=True), 64)


def _put_lone_surrogate(evt: dict[str, Any], where: str) -> None:
    """A lone surrogate (which a JSON escape can carry) in the event's path, a header, the
    query or the method."""
    lone = "\ud800"
    if where == "path":
        evt["path"] = "/items/" + lone
    elif where == "header":
        evt["headers"]["authorization"] = "Bearer " + lone
    elif where == "query":
        evt["queryString"] = {"q": lone}
    else:
        evt["httpMethod"] = "POST" + lone


@pytest.mark.parametrize("where", ["body", "base64", "path", "header", "query", "method"])
def test_an_oversize_body_is_413_whatever_else_in_the_event_cannot_be_read(where: str) -> None:
    """The body's size is judged first: not its text, its base64, or the rest of the event;
    and the answer has its CORS headers, as every answer does."""
    with settings_env(MAX_BODY_BYTES="64", CORS_ALLOW_ORIGINS="https://app.example"):
        small = http_handler(create_item)
    lone = "\ud800"
    evt = event("POST", "/items", raw_body="x" * 65, headers={"Origin": "https://app.example"})
    if where == "body":
        evt["body"] = "x" * 64 + lone
    elif where == "base64":
        evt["body"], evt["isBase64Encoded"] = "!" * 88, True  # 88 characters hold 66 bytes
    else:
        _put_lone_surrogate(evt, where)
    reply = reply_of(small(evt, context()))
    assert_too_large(reply, 64)
    assert reply.header("Access-Control-Allow-Origin") == "https://app.example"


def test_a_base64_body_is_measured_by_what_it_decodes_to() -> None:
    with settings_env(MAX_BODY_BYTES="64"):
        small = http_handler(create_item)
    for size in range(60, 70):  # each padding: 0, 1 or 2 "="
        raw = json.dumps({"name": "pen", "count": 1})
        raw = raw[:-1] + " " * (size - len(raw)) + "}"
        reply = call(small, "POST", "/items", raw_body=raw, base64_body=True)
        assert reply.status == (413 if size > 64 else 201), (size, reply.body)


def test_default_body_limit_is_one_mebibyte() -> None:
    raw = json.dumps({"name": "pen", "count": 1, "pad": "x" * (1024 * 1024)})
    assert_too_large(call(handler, "POST", "/items", raw_body=raw), 1024 * 1024)


# -- headers -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["Authorization", "authorization", "AUTHORIZATION", "aUtHoRiZaTiOn"]
)
def test_headers_are_case_insensitive(name: str) -> None:
    reply = call(handler, "GET", "/echo", headers={name: "Bearer abc", "x-custom": "1"})
    assert reply.status == 200
    assert reply.json()["authorization"] == "Bearer abc"
    assert reply.json()["has_auth"] is True
    assert reply.json()["x_custom"] == "1"


def test_source_ip_comes_from_the_request_context() -> None:
    reply = call(handler, "GET", "/echo", source_ip="198.51.100.7")
    assert reply.json()["source_ip"] == "198.51.100.7"


# -- query strings -----------------------------------------------------------------------


def test_repeated_parameters_list_fields_get_all_scalars_get_the_last() -> None:
    reply = call(handler, "GET", "/items", query={"tag": ["a", "b", "c"], "limit": ["5", "7"]})
    assert reply.status == 200
    assert reply.json()["tag"] == ["a", "b", "c"]
    assert reply.json()["limit"] == 7


def test_a_parameter_the_event_lists_with_no_value_is_absent() -> None:
    """An event may list a name with no values at all: the parameter is left out (its
    default), for a scalar as for a list, never a 500."""
    reply = call(handler, "GET", "/items", query={"limit": [], "tag": [], "q": ["x"]})
    assert reply.status == 200, reply.body
    assert (reply.json()["limit"], reply.json()["tag"], reply.json()["q"]) == (20, [], "x")
    assert "limit" not in reply.json()["raw"]


def test_single_value_for_a_list_field_is_a_list_of_one() -> None:
    reply = call(handler, "GET", "/items", query={"tag": "solo"})
    assert reply.json()["tag"] == ["solo"]


def test_unknown_parameters_are_ignored_by_the_model_but_kept_raw() -> None:
    reply = call(handler, "GET", "/items", query={"utm_source": "x", "limit": "2"})
    assert reply.status == 200
    assert reply.json()["limit"] == 2
    assert reply.json()["raw"]["utm_source"] == ["x"]


@pytest.mark.parametrize(
    ("query", "loc"),
    [
        ({"limit": "abc"}, ["query", "limit"]),
        ({"limit": "0"}, ["query", "limit"]),
        ({"limit": "101"}, ["query", "limit"]),
        ({"colour": "green"}, ["query", "colour"]),
    ],
    ids=["not-an-int", "below-range", "above-range", "unknown-enum"],
)
def test_bad_query_values_are_422(query: dict[str, str], loc: list[str]) -> None:
    reply = call(handler, "GET", "/items", query=query)
    assert_validation_error(reply, loc)


# -- path parameters ---------------------------------------------------------------------


def test_path_parameters_come_from_the_routes_template() -> None:
    reply = call(handler, "GET", "/items/i1/parts/p2")
    assert reply.status == 200
    assert reply.json() == {"item_id": "i1", "part": "p2"}


# -- request ids -------------------------------------------------------------------------


def test_request_id_is_the_invocations() -> None:
    result = handler(event("GET", "/echo"), context(request_id="req-7"))
    assert result["headers"]["X-Request-Id"] == "req-7"
    assert json.loads(result["body"])["request_id"] == "req-7"


def test_error_body_request_id_is_the_header_and_the_invocations() -> None:
    result = handler(event("POST", "/items", raw_body="{"), context(request_id="req-8"))
    assert result["statusCode"] == 422
    assert result["headers"]["X-Request-Id"] == "req-8"
    assert json.loads(result["body"])["request_id"] == "req-8"


def test_the_client_address_is_the_platforms_header_never_a_forwarded_one() -> None:
    evt = event("GET", "/echo", source_ip="203.0.113.5", headers={"X-Forwarded-For": "10.0.0.1"})
    assert json.loads(handler(evt, context())["body"])["source_ip"] == "203.0.113.5"
    evt["headers"].pop("x-scf-remote-addr")
    assert json.loads(handler(evt, context())["body"])["source_ip"] == ""


def test_without_a_request_id_one_is_made_and_used_consistently() -> None:
    evt = event("POST", "/items", raw_body="{")
    ctx = context()
    ctx.pop("request_id")
    result = handler(evt, ctx)
    header = result["headers"]["X-Request-Id"]
    assert header and json.loads(result["body"])["request_id"] == header


# -- CORS --------------------------------------------------------------------------------


def test_cors_headers_for_an_allowed_origin() -> None:
    with settings_env(CORS_ALLOW_ORIGINS="https://app.example, https://admin.example"):
        cors = http_handler(echo, create_item)
    reply = call(cors, "GET", "/echo", headers={"Origin": "https://app.example"})
    assert reply.status == 200
    assert reply.header("Access-Control-Allow-Origin") == "https://app.example"
    assert "X-Request-Id" in (reply.header("Access-Control-Expose-Headers") or "")
    assert reply.header("Vary") == "Origin"

    preflight = call(cors, "OPTIONS", "/items", headers={"origin": "https://admin.example"})
    assert preflight.status == 204
    assert preflight.header("Access-Control-Allow-Origin") == "https://admin.example"
    assert "POST" in (preflight.header("Access-Control-Allow-Methods") or "")
    assert "Authorization" in (preflight.header("Access-Control-Allow-Headers") or "")

    # Errors carry CORS headers too, or the browser hides the error body.
    bad = call(cors, "POST", "/items", raw_body="{", headers={"Origin": "https://app.example"})
    assert bad.status == 422
    assert bad.header("Access-Control-Allow-Origin") == "https://app.example"
    # So does the refusal of an event that cannot be read.
    unreadable = event("GET", "/echo", headers={"Origin": "https://app.example"})
    unreadable["queryString"] = {"q": "\ud800"}
    refused = reply_of(cors(unreadable, context()))
    assert refused.status == 422
    assert refused.header("Access-Control-Allow-Origin") == "https://app.example"


def test_no_cors_headers_for_other_origins_or_when_unconfigured() -> None:
    with settings_env(CORS_ALLOW_ORIGINS="https://app.example"):
        cors = http_handler(echo)
    reply = call(cors, "GET", "/echo", headers={"Origin": "https://evil.example"})
    assert reply.header("Access-Control-Allow-Origin") is None
    plain = call(handler, "GET", "/echo", headers={"Origin": "https://app.example"})
    assert plain.header("Access-Control-Allow-Origin") is None


def test_a_preflight_may_be_kept_by_the_browser() -> None:
    """Every call with a token needs a preflight (Authorization is not a simple header), and
    each preflight is an invocation: without Max-Age a browser keeps its answer 5 s."""
    with settings_env(CORS_ALLOW_ORIGINS="https://app.example"):
        cors = http_handler(echo, create_item)
    preflight = call(cors, "OPTIONS", "/items", headers={"Origin": "https://app.example"})
    assert preflight.status == 204
    assert preflight.header("Access-Control-Max-Age") == "600"


@pytest.mark.parametrize("origins", ["https://app.example", "*"])
def test_every_answer_says_it_varies_by_origin_while_cors_is_on(origins: str) -> None:
    """Which CORS headers an answer has depends on the Origin: a cache that kept an answer
    given without them (no Origin, or another one) would serve it to an allowed origin,
    whose browser then refuses it."""
    with settings_env(CORS_ALLOW_ORIGINS=origins):
        cors = http_handler(echo)
    for headers in ({}, {"Origin": "https://evil.example"}, {"Origin": "https://app.example"}):
        reply = call(cors, "GET", "/echo", headers=headers)
        sent = headers.get("Origin")
        allowed = sent is not None and (origins == "*" or sent == "https://app.example")
        assert reply.header("Vary") == "Origin", headers
        assert (reply.header("Access-Control-Allow-Origin") is not None) == allowed, headers
    assert call(handler, "GET", "/echo").header("Vary") is None  # CORS off: nothing varies


def test_binary_response_bodies_go_out_base64_encoded() -> None:
    result = handler(event("GET", "/logo.png"), context())
    assert result["statusCode"] == 200
    assert result["isBase64Encoded"] is True
    assert base64.b64decode(result["body"]) == PNG_BYTES
    assert result["headers"]["Content-Type"] == "image/png"
    text = handler(event("GET", "/echo"), context())
    assert "isBase64Encoded" not in text and text["body"].startswith("{")


# -- text that is not Unicode ------------------------------------------------------------


@pytest.mark.parametrize("where", ["body", "path", "header", "query", "method"])
def test_text_that_is_not_valid_unicode_is_422_wherever_it_is(where: str) -> None:
    """The event is JSON, and a JSON escape can carry a lone surrogate that the driver and
    the token library cannot encode: refused where the event is read, never a 500."""
    lone = "\ud800"
    evt = event("POST", "/items", body={"name": "pen", "count": 1})
    if where == "body":
        evt["body"] = '{"name": "pen' + lone + '", "count": 1}'
    else:
        _put_lone_surrogate(evt, where)
    result = handler(evt, context())
    assert result["statusCode"] == 422, result
    body = json.loads(result["body"])
    assert body["code"] == "VALIDATION_ERROR"
    assert body["details"] == [{"loc": [where], "msg": "not valid Unicode"}]


def test_methods_the_api_does_not_use_count_together() -> None:
    """A client can invent any number of methods; each label value would be a series kept
    for the instance's life."""
    from app.observability.metrics import HTTP_REQUESTS

    for number in range(3):
        assert handler(event(f"X{number}INVENTED", "/echo"), context())["statusCode"] == 405
    methods = {labels["method"] for labels, _ in HTTP_REQUESTS.series()}
    assert "OTHER" in methods and not any("INVENTED" in method for method in methods)
