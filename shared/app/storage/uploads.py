"""Client uploads: a presigned PUT under the user's own prefix, and the keys a task's input
names.

`POST /uploads` answers a presigned PUT for `uploads/{user_id}/{id}` whose signature covers
the declared Content-Type and Content-Length, valid PUT_TTL_S: the store refuses any other
type or size. A task input may name the key as a whole string value anywhere in it;
`POST /tasks` checks each one (the owner's own prefix, the object there), and the runner
sends upstream a presigned GET in its place.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from app.clock import iso
from app.config import get_settings
from app.errors import AppError, ErrorCode
from app.ids import new_id
from app.storage.objects import UPLOADS, StorageError, upload_key

PUT_TTL_S = 15 * 60
GET_TTL_S = 3600
CONTENT_TYPES = ("image/png", "image/jpeg", "image/webp", "application/pdf", "text/plain")


@dataclass(frozen=True)
class Upload:
    key: str
    url: str
    method: str
    headers: dict[str, str]
    expires_at: str


def _invalid(message: str, field: str) -> AppError:
    return AppError(
        ErrorCode.UPLOAD_INVALID, message, details=[{"loc": ["body", field], "msg": message}]
    )


def create(user_id: str, content_type: str, size_bytes: int) -> Upload:
    if content_type not in CONTENT_TYPES:
        raise _invalid(f"content_type must be one of {', '.join(CONTENT_TYPES)}", "content_type")
    limit = get_settings().upload_max_bytes
    if not 1 <= size_bytes <= limit:
        raise _invalid(f"size_bytes must be 1 to {limit}", "size_bytes")
    from app.storage.store import store  # cold start: the bucket only where it is used

    key = upload_key(user_id, new_id())
    signed = store().presign_put(key, content_type, size_bytes, PUT_TTL_S)
    return Upload(key, signed.url, signed.method, signed.headers, iso(signed.expires_at) or "")


def named(value: Any) -> Iterator[str]:
    """Every whole string value in `value` that is an upload key (`uploads/...`)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if item.startswith(UPLOADS):
                yield item
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def check(user_id: str, task_input: Any) -> list[str]:
    """The upload keys the input names, each the user's own and uploaded; else
    `422 UPLOAD_INVALID` naming the key."""
    keys = sorted(set(named(task_input)))
    if not keys:
        return []
    from app.storage.store import store  # cold start: the bucket only for inputs that name one

    own = f"{UPLOADS}{user_id}/"
    for key in keys:
        rest = key[len(own) :]
        if not key.startswith(own) or not rest or "/" in rest:
            raise _input_invalid(key, "is not an upload of yours")
    try:
        bucket = store()
        missing = [key for key in keys if bucket.head(key) is None]
    except StorageError as error:
        raise AppError(ErrorCode.SERVICE_UNAVAILABLE) from error
    if missing:
        raise _input_invalid(missing[0], "was never uploaded")
    return keys


def _input_invalid(key: str, why: str) -> AppError:
    return AppError(
        ErrorCode.UPLOAD_INVALID,
        f"The upload {key} {why}.",
        details=[{"loc": ["body", "input"], "msg": f"{key} {why}"}],
    )


def outbound(user_id: str, value: Any) -> Any:
    """`value` with each of the user's upload keys replaced by a presigned GET URL, as an
    upstream call receives it."""
    own = f"{UPLOADS}{user_id}/"
    if not any(key.startswith(own) for key in named(value)):
        return value
    from app.storage.store import store  # cold start: the bucket only for inputs that name one

    bucket = store()
    urls: dict[str, str] = {}

    def swap(item: Any) -> Any:
        if isinstance(item, str) and item.startswith(own):
            if item not in urls:
                urls[item] = bucket.presign_get(item, GET_TTL_S).url
            return urls[item]
        if isinstance(item, dict):
            return {k: swap(v) for k, v in item.items()}
        if isinstance(item, list):
            return [swap(v) for v in item]
        return item

    return swap(value)
