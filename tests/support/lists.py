"""The public lists served whole from the cache (`GET /plans`, `GET /pipelines`), read as a
client reads them: page by page, and with query values the contract refuses."""

from __future__ import annotations

import base64
import json
from typing import Any

from tests.support.function_url import Reply, call
from tests.support.functions import handler


def cursor_of(key: Any) -> str:
    """A cursor crafted as the API encodes one (base64 of JSON)."""
    return base64.urlsafe_b64encode(json.dumps(key).encode()).decode().rstrip("=")


def get(function: str, path: str, **query: str) -> Reply:
    return call(handler(function), "GET", path, query=query)


def every_page(function: str, path: str, limit: int) -> list[dict[str, Any]]:
    """Every item, following `next_cursor` to the end; each page holds `limit` items but the
    last, which holds at least one unless the list is empty."""
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    for _ in range(1000):
        reply = get(function, path, limit=str(limit), **({"cursor": cursor} if cursor else {}))
        assert reply.status == 200, reply.body
        page = reply.json()
        items += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            assert 1 <= len(page["items"]) <= limit or not items
            return items
        assert len(page["items"]) == limit
    raise AssertionError("the list never ended")


# Parameters every list refuses, with the parameter the error names.
BAD_QUERIES: list[tuple[dict[str, str], str]] = [
    ({"limit": "0"}, "limit"),
    ({"limit": "101"}, "limit"),
    ({"limit": "-1"}, "limit"),
    ({"limit": "abc"}, "limit"),
    ({"limit": "1.5"}, "limit"),
    ({"cursor": "not-a-cursor"}, "cursor"),
    ({"cursor": "eyJ4IjoxfQ"}, "cursor"),  # {"x": 1}
    ({"cursor": "x" * 201}, "cursor"),
    ({"cursor": base64.urlsafe_b64encode(b"\xff\xfe").decode()}, "cursor"),
    # a cursor of the lists read from the database: a time, then an id
    ({"cursor": cursor_of(["2026-01-01T00:00:00Z", "demo"])}, "cursor"),
    ({"cursor": cursor_of([])}, "cursor"),
    ({"cursor": cursor_of([True, "demo"])}, "cursor"),
    ({"cursor": cursor_of([1.5, "demo"])}, "cursor"),
    ({"cursor": cursor_of(["a b"])}, "cursor"),
    ({"cursor": cursor_of([1, 2, "demo"])}, "cursor"),
    ({"cursor": cursor_of("demo")}, "cursor"),
]


def refused(reply: Reply, parameter: str) -> bool:
    body = reply.json()
    return (reply.status, body["code"]) == (422, "VALIDATION_ERROR") and body["details"][0][
        "loc"
    ] == ["query", parameter]
