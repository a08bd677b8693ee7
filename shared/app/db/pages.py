"""Keyset pagination, newest first, over (created_at, id): the one cursor of every list.

A cursor is opaque to clients (base64 of the last row's time and id); anything that is not a
cursor this API gave out is `422 VALIDATION_ERROR`, never a 500, however it was crafted.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Generic, TypeVar

from sqlalchemy import Select, and_, or_
from sqlalchemy.sql.elements import ColumnElement

from app.clock import iso
from app.errors import AppError, ErrorCode

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
    """One page of a list, newest first, and the cursor of the next (None on the last)."""

    items: list[T]
    next_cursor: str | None


def encode(row: Mapping[Any, Any]) -> str:
    raw = json.dumps([iso(row["created_at"]), row["id"]]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created, row_id = json.loads(raw)
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
