"""Cursors: what the API gave out round-trips; anything else is 422, never a 500."""

from __future__ import annotations

import base64
import json

import pytest

from app.clock import utcnow
from app.db import pages
from app.errors import AppError, ErrorCode
from app.ids import new_id
from tests.support.function_url import call
from tests.support.functions import handler
from tests.support.pipelines import token_for
from tests.support.quota import new_user


def _cursor(value: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


def test_a_cursor_round_trips() -> None:
    row = {"created_at": utcnow(), "id": new_id()}
    assert pages.decode(pages.encode(row)) == (row["created_at"], row["id"])


@pytest.mark.parametrize(
    "cursor",
    [
        "not base64 !",
        _cursor("just a string"),
        _cursor(["2026-11-29T00:00:00", "x"]),  # naive
        _cursor(["2026-11-29T00:00:00Z", 7]),  # id not a string
        _cursor(["0001-01-01T00:00:00+14:00", "x"]),  # before year 1 in UTC
        _cursor(["9999-12-31T23:59:59-14:00", "x"]),  # after year 9999 in UTC
        _cursor(["2026-11-29T00:00:00Z", "\ud800"]),  # a lone surrogate: not even UTF-8
        _cursor(["2026-11-29T00:00:00Z", "é" * 3]),  # no id this API gives out
        _cursor(["2026-11-29T00:00:00Z", "a" * 65]),  # longer than any key a list pages over
        _cursor(["2026-11-29T00:00:00Z", ""]),
    ],
)
def test_anything_else_is_422(cursor: str) -> None:
    with pytest.raises(AppError) as caught:
        pages.decode(cursor)
    assert caught.value.code is ErrorCode.VALIDATION_ERROR


def test_a_crafted_cursor_on_get_tasks_is_422() -> None:
    token = token_for(new_user())
    reply = call(
        handler("tasks"),
        "GET",
        "/tasks",
        token=token,
        query={"cursor": _cursor(["0001-01-01T00:00:00+14:00", "x"])},
    )
    assert reply.status == 422
    assert reply.json()["details"][0]["loc"] == ["query", "cursor"]


@pytest.mark.parametrize(
    ("function", "path"), [("tasks", "/tasks"), ("admin-users-list", "/admin/users")]
)
def test_a_cursor_whose_id_is_not_utf8_is_422_on_every_list(function: str, path: str) -> None:
    # JSON can spell a lone surrogate (`\ud800`), which no database driver can send.
    token = token_for(new_user(role="admin"))
    cursor = _cursor(["2026-11-29T00:00:00Z", "\ud800"])
    reply = call(handler(function), "GET", path, token=token, query={"cursor": cursor})
    assert reply.status == 422, reply.body
    assert reply.json()["details"][0]["loc"] == ["query", "cursor"]
