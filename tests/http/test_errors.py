"""The error envelope of the API contract, for every kind of failure, and the status of
every error code."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import BaseModel

from app.errors import AppError, ErrorCode
from app.http import Auth, Request, Router, http_handler
from tests.support.function_url import call, context, event
from tests.support.logs import capture_logs
from tests.support.pipelines import token_for
from tests.support.quota import new_user

router = Router(tags=("test",))
SECRET_TEXT = "db password is hunter2-secret"


class ThingIn(BaseModel):
    size: int


@router.get("/boom", auth=Auth.PUBLIC)
def boom(req: Request[None, None]) -> None:
    raise RuntimeError(SECRET_TEXT)


@router.get("/quota", auth=Auth.PUBLIC)
def out_of_quota(req: Request[None, None]) -> None:
    raise AppError(ErrorCode.QUOTA_INSUFFICIENT, "Not enough quota.", details={"needed": 3})


@router.get("/slow-down", auth=Auth.PUBLIC)
def slow_down(req: Request[None, None]) -> None:
    raise AppError(ErrorCode.RATE_LIMITED, headers={"Retry-After": "7"})


@router.get("/things/{thing_id}", auth=Auth.PUBLIC)
def get_thing(req: Request[None, None]) -> dict[str, str]:
    return {"id": req.path_params["thing_id"]}


@router.post("/things", auth=Auth.USER, body=ThingIn, status=201)
def create_thing(req: Request[ThingIn, None]) -> dict[str, str]:
    return {"id": "new"}


@router.get("/admin/things", auth=Auth.ADMIN)
def admin_things(req: Request[None, None]) -> dict[str, str]:
    return {}


class ThingOut(BaseModel):
    id: str
    size: int


@router.get("/bad-response", auth=Auth.PUBLIC, response=ThingOut)
def bad_response(req: Request[None, None]) -> Any:
    # A handler whose answer does not fit its declared response model is a server bug:
    # 500, never a 422 blaming the client.
    return {"id": "t1", "size": "large"}


handler = http_handler(
    boom, out_of_quota, slow_down, get_thing, create_thing, admin_things, bad_response
)

# The table of API.md "Error codes (HTTP status)", in its order.
API_ERROR_TABLE = {
    "VALIDATION_ERROR": 422,
    "AUTH_REQUIRED": 401,
    "AUTH_TOKEN_INVALID": 401,
    "AUTH_TOKEN_EXPIRED": 401,
    "AUTH_INVALID_CREDENTIALS": 401,
    "AUTH_REFRESH_INVALID": 401,
    "AUTH_REFRESH_REUSED": 401,
    "AUTH_TOO_MANY_ATTEMPTS": 429,
    "FORBIDDEN": 403,
    "ACCOUNT_DISABLED": 403,
    "NOT_FOUND": 404,
    "PHONE_ALREADY_REGISTERED": 409,
    "SMS_CODE_INVALID": 400,
    "SMS_RATE_LIMITED": 429,
    "REFERRER_INVALID": 400,
    "WECHAT_CODE_INVALID": 400,
    "WECHAT_RATE_LIMITED": 429,
    "WECHAT_USER_BLOCKED": 403,
    "WECHAT_UNAVAILABLE": 502,
    "QUOTA_INSUFFICIENT": 402,
    "PIPELINE_NOT_FOUND": 404,
    "TASK_NOT_CANCELLABLE": 409,
    "IDEMPOTENCY_KEY_MISMATCH": 409,
    "PLAN_NOT_FOUND": 404,
    "PAYMENT_PROVIDER_ERROR": 502,
    "RATE_LIMITED": 429,
    "METHOD_NOT_ALLOWED": 405,
    "SERVICE_UNAVAILABLE": 503,
    "INTERNAL_ERROR": 500,
    "AUTH_SESSION_ENDED": 401,
    "PAYLOAD_TOO_LARGE": 413,
    "UPLOAD_INVALID": 422,
}
# Carried in task data, never an HTTP answer.
TASK_ONLY_CODES = {"PIPELINE_STEP_FAILED"}


def assert_envelope(reply: Any, status: int, code: str) -> dict[str, Any]:
    assert reply.status == status, reply.body
    assert reply.header("Content-Type").startswith("application/json")
    body = reply.json()
    assert set(body) <= {"code", "message", "request_id", "details"}
    assert body["code"] == code
    assert isinstance(body["message"], str) and body["message"]
    assert body["request_id"] == reply.header("X-Request-Id")
    return body


def test_every_api_error_code_has_its_status() -> None:
    actual = {code.value: code.status for code in ErrorCode if code.value not in TASK_ONLY_CODES}
    assert actual == API_ERROR_TABLE
    assert {code.value for code in ErrorCode} == set(API_ERROR_TABLE) | TASK_ONLY_CODES


@pytest.mark.parametrize("code", list(ErrorCode), ids=lambda c: c.value)
def test_every_code_renders_the_envelope(code: ErrorCode) -> None:
    error = AppError(code)
    assert error.status == code.status
    body = error.envelope("rid-1")
    assert body == {"code": code.value, "message": error.message, "request_id": "rid-1"}
    assert error.message and code.value not in error.message


def test_app_error_with_details_and_message() -> None:
    body = assert_envelope(call(handler, "GET", "/quota"), 402, "QUOTA_INSUFFICIENT")
    assert body["message"] == "Not enough quota."
    assert body["details"] == {"needed": 3}


def test_app_error_headers_reach_the_response() -> None:
    reply = call(handler, "GET", "/slow-down")
    body = assert_envelope(reply, 429, "RATE_LIMITED")
    assert "details" not in body
    assert reply.header("Retry-After") == "7"


def test_validation_error_envelope() -> None:
    token = token_for(new_user())
    reply = call(handler, "POST", "/things", body={"size": "big"}, token=token)
    body = assert_envelope(reply, 422, "VALIDATION_ERROR")
    assert body["details"] == [{"loc": ["body", "size"], "msg": body["details"][0]["msg"]}]
    assert call(handler, "POST", "/things", body={"size": 2}, token=token).status == 201


def test_auth_is_checked_before_the_body() -> None:
    assert_envelope(call(handler, "POST", "/things", raw_body="{"), 401, "AUTH_REQUIRED")


def test_unknown_path_is_404_not_found() -> None:
    assert_envelope(call(handler, "GET", "/nowhere"), 404, "NOT_FOUND")
    assert_envelope(call(handler, "GET", "/things/a/b"), 404, "NOT_FOUND")


@pytest.mark.parametrize("path", ["/quota\n", "/things/t1/\n", "/admin/things\n"])
def test_a_path_with_a_trailing_newline_is_unknown(path: str) -> None:
    # `%0A` reaches the event decoded; a regex `$` would still match before it.
    assert_envelope(call(handler, "GET", path), 404, "NOT_FOUND")


def test_known_path_with_wrong_method_is_405() -> None:
    assert_envelope(call(handler, "DELETE", "/things/t1"), 405, "METHOD_NOT_ALLOWED")
    body = assert_envelope(call(handler, "PUT", "/boom"), 405, "METHOD_NOT_ALLOWED")
    assert "details" not in body


def test_a_405_names_the_methods_the_path_has() -> None:
    # RFC 9110 requires the header; /things is served by POST only, /things/{id} by GET.
    assert call(handler, "GET", "/things").header("Allow") == "POST"
    assert call(handler, "TRACE", "/things/t1").header("Allow") == "GET, HEAD"


def test_user_route_without_a_token_is_401_auth_required() -> None:
    assert_envelope(call(handler, "POST", "/things"), 401, "AUTH_REQUIRED")
    reply = call(handler, "POST", "/things", headers={"Authorization": "Basic abc"})
    assert_envelope(reply, 401, "AUTH_TOKEN_INVALID")
    reply = call(handler, "GET", "/admin/things", token="not-a-jwt")
    assert_envelope(reply, 401, "AUTH_TOKEN_INVALID")


def test_admin_route_with_a_user_token_is_403() -> None:
    token = token_for(new_user())
    assert_envelope(call(handler, "GET", "/admin/things", token=token), 403, "FORBIDDEN")
    # The role is the user's, not the token's: a token claiming admin for a user is a user's.
    claiming = token_for(new_user(), role="admin")
    assert_envelope(call(handler, "GET", "/admin/things", token=claiming), 403, "FORBIDDEN")
    admin = token_for(new_user(role="admin"))
    assert call(handler, "GET", "/admin/things", token=admin).status == 200


@pytest.mark.parametrize("path", ["/boom", "/bad-response"])
def test_unexpected_exception_is_500_without_internals_and_logged_with_trace(path: str) -> None:
    evt = event("GET", path)
    ctx = context("things-boom")
    request_id = ctx["request_id"]
    with capture_logs() as logs:
        result = handler(evt, ctx)

    assert result["statusCode"] == 500
    assert result["headers"]["X-Request-Id"] == request_id
    body = json.loads(result["body"])
    assert body == {
        "code": "INTERNAL_ERROR",
        "message": body["message"],
        "request_id": request_id,
    }
    assert "Traceback" not in result["body"] and SECRET_TEXT not in result["body"]
    assert "Error" not in body["message"]

    errors = [line for line in logs.lines if line.get("exception")]
    assert len(errors) == 1
    assert errors[0]["request_id"] == request_id
    assert errors[0]["level"] == "error"
    assert "Traceback" in errors[0]["exception"]
    if path == "/boom":
        assert SECRET_TEXT in errors[0]["exception"]
        assert "in boom" in errors[0]["exception"]
    invocation = logs.where(message="invocation")
    assert len(invocation) == 1 and invocation[0]["status"] == 500


def test_an_event_that_is_not_an_http_event_is_not_a_crash() -> None:
    result = handler({}, None)
    assert result["statusCode"] == 404
    body = json.loads(result["body"])
    assert body["code"] == "NOT_FOUND"
    assert body["request_id"] == result["headers"]["X-Request-Id"]
