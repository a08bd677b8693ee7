"""HEAD on a GET route is that GET without its content (RFC 9110 9.3.2): the same handler,
auth, validation and errors, the same status and headers, Content-Length the length of the
body a GET gets, and no body. A path with no GET route is 405 to HEAD as to any other
method it does not serve; an unknown path 404."""

from __future__ import annotations

import base64
from typing import Any

from pydantic import BaseModel, Field

from app.errors import AppError, ErrorCode
from app.http import Auth, Request, Response, Router, http_handler
from tests.support.function_url import context, event
from tests.support.pipelines import token_for
from tests.support.quota import new_user

router = Router(tags=("test",))
PNG_BYTES = b"\x89PNG\r\n\x1a\n\x00\xff\xfe"
CALLS: list[str] = []


class PageQuery(BaseModel):
    limit: int = Field(20, ge=1, le=100)


@router.get("/notes", auth=Auth.PUBLIC, query=PageQuery)
def list_notes(req: Request[None, PageQuery]) -> dict[str, Any]:
    CALLS.append(req.method)
    # Text beyond ASCII: Content-Length counts the UTF-8 bytes, not the characters.
    return {"items": [{"title": "笔记"}], "limit": req.query.limit}


@router.post("/notes", auth=Auth.PUBLIC, status=201)
def create_note(req: Request[None, None]) -> dict[str, Any]:
    return {}


@router.post("/notes/search", auth=Auth.PUBLIC)
def search_notes(req: Request[None, None]) -> dict[str, Any]:
    return {}


@router.get("/me", auth=Auth.USER)
def me(req: Request[None, None]) -> dict[str, Any]:
    return {"user": req.user.user_id}


@router.get("/gone", auth=Auth.PUBLIC)
def gone(req: Request[None, None]) -> None:
    raise AppError(ErrorCode.NOT_FOUND, "No such note.")


@router.get("/logo.png", auth=Auth.PUBLIC, content_type="image/png")
def logo(req: Request[None, None]) -> Response:
    return Response(200, PNG_BYTES, {"Cache-Control": "max-age=60"}, "image/png")


@router.get("/ping", auth=Auth.PUBLIC, status=204)
def ping(req: Request[None, None]) -> None:
    return None


handler = http_handler(list_notes, create_note, search_notes, me, gone, logo, ping)


def _both(path: str, **kwargs: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """The answers to a GET and to a HEAD of the same request."""
    got = handler(event("GET", path, **kwargs), context())
    head = handler(event("HEAD", path, **kwargs), context())
    return got, head


def _body_bytes(result: dict[str, Any]) -> bytes:
    if result.get("isBase64Encoded"):
        return base64.b64decode(result["body"])
    return str(result["body"]).encode("utf-8")


def assert_head_of(got: dict[str, Any], head: dict[str, Any]) -> None:
    assert head["statusCode"] == got["statusCode"]
    assert head["body"] == "" and not head.get("isBase64Encoded")
    assert head["headers"]["Content-Length"] == str(len(_body_bytes(got)))
    assert head["headers"]["X-Request-Id"]
    same = {k: v for k, v in got["headers"].items() if k not in ("X-Request-Id", "Content-Length")}
    assert {k: v for k, v in head["headers"].items() if k in same} == same


def test_head_of_a_get_route_is_the_get_without_its_body() -> None:
    CALLS.clear()
    got, head = _both("/notes", query={"limit": "5"})
    assert got["statusCode"] == 200
    assert_head_of(got, head)
    assert head["headers"]["Content-Type"].startswith("application/json")
    assert CALLS == ["GET", "HEAD"]  # the same handler served both


def test_head_of_a_binary_answer_counts_its_bytes() -> None:
    got, head = _both("/logo.png")
    assert_head_of(got, head)
    assert head["headers"]["Content-Length"] == str(len(PNG_BYTES))
    assert head["headers"]["Cache-Control"] == "max-age=60"


def test_head_of_a_204_has_no_content_length() -> None:
    # RFC 9110 8.6: a 204 carries no Content-Length, to a GET or a HEAD.
    head = handler(event("HEAD", "/ping"), context())
    assert head["statusCode"] == 204 and head["body"] == ""
    assert "Content-Length" not in head["headers"]


def test_head_is_authenticated_validated_and_refused_as_the_get_is() -> None:
    got, head = _both("/me")
    assert got["statusCode"] == 401
    assert_head_of(got, head)
    token = token_for(new_user())
    got, head = _both("/me", token=token)
    assert got["statusCode"] == 200
    assert_head_of(got, head)
    got, head = _both("/notes", query={"limit": "0"})
    assert got["statusCode"] == 422
    assert_head_of(got, head)
    got, head = _both("/gone")
    assert got["statusCode"] == 404
    assert_head_of(got, head)


def test_head_of_a_path_without_a_get_route_is_405_and_unknown_paths_404() -> None:
    head = handler(event("HEAD", "/notes/search"), context())
    assert head["statusCode"] == 405
    assert head["headers"]["Allow"] == "POST"
    assert head["body"] == ""
    assert int(head["headers"]["Content-Length"]) > 0  # the length of the GET's error body
    assert handler(event("HEAD", "/nowhere"), context())["statusCode"] == 404


def test_the_allow_header_names_head_where_get_is_served() -> None:
    refused = handler(event("DELETE", "/notes"), context())
    assert refused["statusCode"] == 405
    assert refused["headers"]["Allow"] == "GET, HEAD, POST"
