"""Client uploads: a presigned PUT under the user's own prefix, and the keys a task's input
names.

`POST /uploads` answers a presigned PUT for `uploads/{user_id}/{id}` whose signature covers
the declared Content-Type and Content-Length and a private ACL, valid PUT_TTL_S: the store
refuses any other type, size or ACL (and the bucket policy any grant or storage-class
header added, or `x-cos-copy-source` making it a copy of another object,
app.storage.bucket_policy). Each one can become an object of up to
UPLOAD_MAX_BYTES that stays on the bill until cleanup, so a user is given at most
UPLOADS_PER_USER_PER_HOUR of them an hour (`429 RATE_LIMITED` with Retry-After past it,
nothing presigned); a request refused as invalid, or one the store could not sign, counts
nothing. A task input may name the key as a whole string value anywhere in it; `POST /tasks`
checks each one (the owner's prefix followed by an id of `create`'s shape and nothing else,
the object there, young enough, not readable by all users: one made so before the bucket
policy was in place is not kept by a task for its whole retention; in a class COS reads
without a restore, as the upstream's presigned GET needs), and the runner sends upstream a
presigned GET in its place.

An upload no task names is deleted by cos-cleanup once it is older than COS_ORPHAN_GRACE_S,
and cleanup decides that from the `task_uploads` rows committed when it lists. A task that
named an upload just short of the grace could see it with HEAD, then lose it to a cleanup
that ran before the task's row committed. So a task may name an upload only while it is
younger than the grace by NAMING_MARGIN_S, far more than `POST /tasks` can take between its
HEAD and its commit (its function's timeout is 10 s) and any clock skew between COS and the
function: past that, the upload is refused as too old, whether cleanup has run yet or not.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from app import counters
from app.clock import iso, utcnow
from app.config import get_settings
from app.errors import AppError, ErrorCode
from app.ids import is_id, new_id
from app.observability import logging as applog
from app.storage.objects import STANDARD, UPLOADS, ObjectInfo, ObjectStore, StorageError, upload_key

PUT_TTL_S = 15 * 60
GET_TTL_S = 3600
NAMING_MARGIN_S = 300
# All the HEADs of one check end within this many seconds, when the bucket answers or not:
# the tasks function has 10 s (serverless.yml), and the transaction and the answer come
# after the check. Past it, 503 SERVICE_UNAVAILABLE, nothing charged.
CHECK_BUDGET_S = 5.0
# HEADs sent at once: fewer than the SDK's connection pool holds (10 for a host), so each
# keeps its connection for the next request.
HEADS_AT_ONCE = 8
# Distinct upload keys one task input may name: each is a HEAD before the task is created,
# within the function's timeout. Fifty covers a batch of pages or pictures for one task.
TASK_UPLOADS_MAX = 50
# The storage classes COS serves a GET from at once; ARCHIVE and DEEP_ARCHIVE need a restore
# first (and a class COS adds later is not assumed readable).
READABLE_CLASSES = frozenset(
    {
        STANDARD,
        "MAZ_STANDARD",
        "STANDARD_IA",
        "MAZ_STANDARD_IA",
        "INTELLIGENT_TIERING",
        "MAZ_INTELLIGENT_TIERING",
    }
)
CONTENT_TYPES = ("image/png", "image/jpeg", "image/webp", "application/pdf", "text/plain")

log = applog.get_logger("app.storage.uploads")


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
    rate_key = f"uploads:rate:{user_id}"
    _take_rate(rate_key)
    from app.storage.store import store  # cold start: the bucket only where it is used

    key = upload_key(user_id, new_id())
    try:
        signed = store().presign_put(key, content_type, size_bytes, PUT_TTL_S)
    except StorageError as error:  # the bucket's client cannot be made: its settings
        counters.give_back(rate_key)  # no URL given: nothing on the bill
        applog.log_fields(log, logging.ERROR, "upload not presigned", error=str(error))
        raise AppError(ErrorCode.SERVICE_UNAVAILABLE) from error
    except Exception:
        counters.give_back(rate_key)
        raise
    return Upload(key, signed.url, signed.method, signed.headers, iso(signed.expires_at) or "")


def _take_rate(rate_key: str) -> None:
    """Count one upload given to the user, or raise RATE_LIMITED. Taken before the URL is
    signed, so that parallel requests are given no more; given back when none is signed. A
    count stays taken whether the client ever sends the bytes or not: the URL it holds can
    put them there."""
    limit = get_settings().uploads_per_user_per_hour
    message = "Too many uploads; try again later."
    counters.take_hourly(rate_key, limit, ErrorCode.RATE_LIMITED, message)


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


def named_by(user_id: str, task_input: Any) -> list[str]:
    """The upload keys the input names, judged without the bucket: more than
    TASK_UPLOADS_MAX of them is `422 VALIDATION_ERROR`, and a key not of the shape
    `POST /uploads` gives the user `422 UPLOAD_INVALID` naming it. Before the user's hourly
    count of tasks: an input refused here has cost nothing."""
    keys = sorted(set(named(task_input)))
    if len(keys) > TASK_UPLOADS_MAX:
        raise AppError(
            ErrorCode.VALIDATION_ERROR,
            f"A task input may name at most {TASK_UPLOADS_MAX} uploads.",
            details=[
                {
                    "loc": ["body", "input"],
                    "msg": f"names {len(keys)} uploads, more than {TASK_UPLOADS_MAX}",
                }
            ],
        )
    own = f"{UPLOADS}{user_id}/"
    for key in keys:
        # Only the shape `create` gives: a key such as `{own}..` would reach the HEAD in
        # `check`, whose path the HTTP client normalises out of what was signed.
        if not key.startswith(own) or not is_id(key[len(own) :]):
            raise _input_invalid(key, "is not an upload of yours")
    return keys


def check(keys: list[str]) -> None:
    """Each of `keys` (from `named_by`) uploaded, readable and young enough to name; else
    `422 UPLOAD_INVALID` naming the key, or `503` when the bucket fails or is too slow."""
    if not keys:
        return
    from app.storage.store import store  # cold start: the bucket only for inputs that name one

    usable = timedelta(seconds=get_settings().cos_orphan_grace_s - NAMING_MARGIN_S)
    try:
        found = _heads(store(), keys)
    except StorageError as error:
        applog.log_fields(
            log,
            logging.WARNING,
            "uploads not checked: the bucket failed or was too slow",
            keys=len(keys),
            error=str(error),
        )
        raise AppError(ErrorCode.SERVICE_UNAVAILABLE) from error
    now = utcnow()
    for key, checked in found.items():
        if checked is None:
            raise _input_invalid(key, "was never uploaded")
        if checked.public:
            # Its uploader gave all users read access (a header its URL does not sign, before
            # the bucket policy refused that): not named, so cleanup deletes it after the grace.
            raise _input_invalid(key, "is readable by anyone; upload it again as it was given")
        info = checked.info
        if info.storage_class not in READABLE_CLASSES:
            # Its uploader chose the class (a header its URL does not sign, before the bucket
            # policy refused that): the upstream's GET would be refused, so not named.
            raise _input_invalid(
                key, "needs a restore before it can be read; upload it again as it was given"
            )
        if now - info.last_modified >= usable:
            minutes = usable.total_seconds() // 60
            raise _input_invalid(
                key, f"is too old to use (over {minutes:.0f} minutes); upload it again"
            )


@dataclass(frozen=True)
class _Found:
    info: ObjectInfo
    public: bool  # its ACL lets all users read it


def _heads(bucket: ObjectStore, keys: list[str]) -> dict[str, _Found | None]:
    """Each key's HEAD and, for an object there, its ACL, HEADS_AT_ONCE keys at a time, all
    of them within CHECK_BUDGET_S: each request waits on the bucket at most what is left of
    the budget when it starts, and this returns when the budget ends whatever is still under
    way. StorageError for the first that fails, or for the budget ending first."""
    ends_at = time.monotonic() + CHECK_BUDGET_S

    def left(operation: str) -> float:
        remaining = ends_at - time.monotonic()
        if remaining <= 0:
            raise StorageError(f"COS {operation} not sent: the check's {CHECK_BUDGET_S:g} s ended")
        return remaining

    def head(key: str) -> _Found | None:
        info = bucket.head(key, timeout_s=left("HeadObject"))
        if info is None:
            return None
        public = bucket.public(key, timeout_s=left("GetObjectACL"))
        return None if public is None else _Found(info, public)

    pool = ThreadPoolExecutor(min(len(keys), HEADS_AT_ONCE), thread_name_prefix="upload-head")
    try:
        futures = {key: pool.submit(head, key) for key in keys}
        remaining = max(0.0, ends_at - time.monotonic())
        done, pending = wait(futures.values(), timeout=remaining, return_when=FIRST_EXCEPTION)
        for future in done:
            future.result()  # the first failure, raised
        if pending:
            raise StorageError(
                f"COS HeadObject unanswered when the check's {CHECK_BUDGET_S:g} s ended"
            )
        return {key: future.result() for key, future in futures.items()}
    finally:
        # A request still under way ends by its own timeout, within what was left of the
        # budget when it started; the answer does not wait for it, nor for those queued.
        pool.shutdown(wait=False, cancel_futures=True)


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
