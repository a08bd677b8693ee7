"""Keyset pagination: the one cursor of every list.

A cursor is opaque to clients: base64 of the JSON of the last item's sort key. Lists read
from the database go newest first, by (created_at, id); lists served whole from the cache
(`GET /plans`, `GET /pipelines`) are paged here in memory, ascending by their own key (some
integer fields, then the id). Anything that is not a cursor this API gave out is
`422 VALIDATION_ERROR`, never a 500, however it was crafted.

SQLAlchemy is imported only where a query is built: the cached lists page with this module
without loading the database.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from app.clock import iso
from app.errors import AppError, ErrorCode

if TYPE_CHECKING:
    from sqlalchemy import Select
    from sqlalchemy.sql.elements import ColumnElement

R = TypeVar("R", bound=Mapping[Any, Any])
T = TypeVar("T")
_INVALID = [{"loc": ["query", "cursor"], "msg": "not a cursor this API gave out"}]
# The keys this API's lists page over: ids it gives out (app.ids: URL-safe, 32 characters)
# and names its clients choose within these (secrets: up to 64). Anything else matches no
# row, and some of it cannot even be sent: JSON can spell a lone surrogate (`\ud800`), which
# is not UTF-8.
_ROW_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a list and the cursor of the next (None on the last)."""

    items: list[T]
    next_cursor: str | None


# An in-memory list's sort key: its integer fields in order, then the id.
SortKey = tuple[int | str, ...]


def _pack(key: Sequence[Any]) -> str:
    raw = json.dumps(list(key)).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unpack(cursor: str) -> Any:
    """The JSON a cursor holds; ValueError (or binascii.Error) when it holds none."""
    raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
    return json.loads(raw)


def encode(row: Mapping[Any, Any]) -> str:
    return _pack([iso(row["created_at"]), row["id"]])


def decode(cursor: str) -> tuple[datetime, str]:
    try:
        created, row_id = _unpack(cursor)
        when = datetime.fromisoformat(str(created).replace("Z", "+00:00"))
        if when.tzinfo is None or not isinstance(row_id, str) or not _ROW_ID.fullmatch(row_id):
            raise ValueError("naive time or bad id")
        # Converting here, not at bind time, keeps an out-of-range time a client error.
        return when.astimezone(timezone.utc), row_id
    except (binascii.Error, ValueError, TypeError, OverflowError) as exc:
        raise AppError(ErrorCode.VALIDATION_ERROR, details=_INVALID) from exc


def newest_first(
    query: Select[Any],
    created_at: ColumnElement[Any],
    row_id: ColumnElement[Any],
    *,
    cursor: str | None,
    limit: int,
) -> Select[Any]:
    """`query` ordered newest first, after `cursor`, one row more than `limit` (to know
    whether there is a next page)."""
    from sqlalchemy import and_, or_  # cold start: only lists read from the database build SQL

    if cursor:
        after_time, after_id = decode(cursor)
        query = query.where(
            or_(created_at < after_time, and_(created_at == after_time, row_id < after_id))
        )
    return query.order_by(created_at.desc(), row_id.desc()).limit(limit + 1)


def split(rows: Sequence[R], limit: int) -> tuple[Sequence[R], str | None]:
    """The page's rows and the cursor of the next page (None on the last one)."""
    page = rows[:limit]
    return page, encode(page[-1]) if len(rows) > limit else None


def ascending(
    items: Sequence[R], *, by: tuple[str, ...] = (), cursor: str | None, limit: int
) -> Page[R]:
    """One page of a list held whole in memory (a cached list), ordered by the integer
    fields `by` and then by id, ascending; the cursor holds the last item's key.

    The list is sorted here by the very key the cursor holds rather than trusted to be in
    that order: a cursor compared in one order over a list in another would skip or repeat
    items, and the cached list is whatever its loader's ORDER BY read (or an earlier
    deploy's). The loaders read this order already (ids are binary-collated, and compare
    as Python compares them), so this is one pass over a list in order.
    """

    def key_of(item: R) -> SortKey:
        return (*(int(item[field]) for field in by), str(item["id"]))

    ordered = sorted(items, key=key_of)
    start = bisect.bisect_right(ordered, _decode_key(cursor, len(by)), key=key_of) if cursor else 0
    page = list(ordered[start : start + limit])
    more = start + limit < len(ordered)
    return Page(page, _pack(key_of(page[-1])) if more else None)


def _decode_key(cursor: str, integers: int) -> SortKey:
    try:
        key = _unpack(cursor)
    except (binascii.Error, ValueError) as exc:
        raise AppError(ErrorCode.VALIDATION_ERROR, details=_INVALID) from exc
    # Exactly the shape `ascending` gives out, so comparing it with an item's key cannot
    # fail: `integers` JSON integers (not booleans), then an id.
    if (
        not isinstance(key, list)
        or len(key) != integers + 1
        or not all(type(value) is int for value in key[:-1])
        or not isinstance(key[-1], str)
        or not _ROW_ID.fullmatch(key[-1])
    ):
        raise AppError(ErrorCode.VALIDATION_ERROR, details=_INVALID)
    return tuple(key)
