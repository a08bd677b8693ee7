"""Outputs kept out of the database.

A step's, a branch's or a fork's output larger than its task's inline limit (`Inline`,
from app.storage.shares: compact JSON past STORAGE_INLINE_MAX_BYTES, or, in a wide task,
more than its share of the task's view as the answer shows it) is written to
`tasks/{task_id}/{name}.json` before its row settles, and the row holds only a reference,
`{"stored": true, "key", "size_bytes"}`. The key is the row's own (step id and branch), so
a retry or a duplicate message writes the same object again rather than a second one:
whatever settles, one object counts.

A fork's results (`{"status", "value"}` per branch) that do not fit inline take the first
of these shapes that does (each reference counted as the StoredOutput it shows as),
decided before anything is written: (a) the fulfilled values larger than
RESULT_INLINE_BYTES as references, each written under its branch's name
(`{fork}.{index}`); (b) every fulfilled value as a reference; (c) the list written whole,
as one object holding the values themselves (no object per value). In (a) and (b), once a
write fails the values not yet written stay inline. Every value opens to its reader:
inline, behind its own StoredOutput, or inside the one object. The one case a reader meets
a bare key: in (c), a value its branch had already stored (larger than
STORAGE_INLINE_MAX_BYTES on its own) stays that branch's `{"stored", "key", "size_bytes"}`
inside the object; the branch's own `output` in the task's view is its StoredOutput.
(c) takes a fork so wide that even its references do not fit, about a hundred
branches at the default limit (fewer in a wide task); inlining such values would mean
fetching large objects back.

Every view renders a reference as the API's `StoredOutput` (`{"stored": true, "url",
"size_bytes", "expires_at"}`, the URL a presigned GET valid URL_TTL_S from that read), and
so does the `previous` an upstream call receives. Only a reference under the task's own
prefix, under a name this module writes (`{step}.{branch or -}.json`), is one: an upstream
that answers something shaped like a reference to another task's object, or to a key that
climbs out of its own task's prefix (`..`), gets its answer shown as it is.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from app import json_values
from app.clock import iso
from app.observability import logging as applog
from app.storage.objects import StorageError, task_prefix
from app.storage.shares import Inline, stored_output_max_bytes

log = applog.get_logger("app.storage.outputs")

URL_TTL_S = 3600
_REFERENCE_FIELDS = {"stored", "key", "size_bytes"}
# The names `_key` writes under a task's prefix: a row's step id (app.pipeline.definition's
# STEP_ID) and its branch or `-`. A key that only starts with the prefix can still leave it
# (`tasks/<id>/../<other>/...`, which a client or the store may resolve), so a reference
# holds exactly one such name.
_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}\.(?:-|[0-9]{1,9})\.json")


# Fork results' values this small stay in place while referencing the larger ones is
# enough (shape (a) above): a reference is about as large.
RESULT_INLINE_BYTES = 256


def keep_results(task_id: str, fork_id: str, results: list[Any], limit: Inline) -> Any:
    """A fork's joined results (`{"status", "value"}` per branch, in branch order): inline
    when they fit `limit`, else with fulfilled values as references (see the module
    docstring for which), else written whole.

    Decided from the results alone before anything is written, so a duplicate writes the
    same objects and no others. A reference's size is known without writing it: its key is
    the branch's and its size the value's."""
    if _fits(task_id, results, limit):
        return results
    values = {
        index: json_values.encode(item["value"])
        for index, item in enumerate(results)
        if item.get("status") == "fulfilled" and not is_reference(task_id, item.get("value"))
    }
    large = {index for index, data in values.items() if len(data) > RESULT_INLINE_BYTES}
    for moved in (large, set(values)):
        planned = [
            {**item, "value": _reference(_key(task_id, f"{fork_id}.{index}"), len(values[index]))}
            if index in moved
            else item
            for index, item in enumerate(results)
        ]
        if not _fits(task_id, planned, limit):
            continue
        kept = list(results)
        for index in sorted(moved):
            reference = _put(task_id, f"{fork_id}.{index}", values[index])
            if reference is None:
                # The bucket is failing: this value and the rest stay inline, as keep()
                # leaves one. The JOIN writes under the fork row's lock, and a hundred
                # values each waiting out a timeout and a retry would hold it for minutes.
                break
            kept[index] = {**results[index], "value": reference}
        return kept
    # The values stay in the one object, where its reader finds them.
    return keep(task_id, f"{fork_id}.-", results, limit)


def keep(task_id: str, name: str, value: Any, limit: Inline) -> Any:
    """`value`, or a reference to the object it was written to when it is larger than
    `limit` (the task's, app.storage.shares). `name` is the row's (e.g. `draft.-`,
    `variants.3`)."""
    data = json_values.encode(value)
    if len(data) <= limit.max_bytes and shown_bytes(task_id, value) <= limit.max_answer_bytes:
        return value
    reference = _put(task_id, name, data)
    return value if reference is None else reference


def _fits(task_id: str, value: Any, limit: Inline) -> bool:
    return (
        len(json_values.encode(value)) <= limit.max_bytes
        and shown_bytes(task_id, value) <= limit.max_answer_bytes
    )


def shown_bytes(task_id: str, value: Any) -> int:
    """The most answer bytes `value` takes in a view (`render`): its own
    (json_values.answer_bytes), with each of the task's references in it counted as the
    largest StoredOutput instead."""
    stored = stored_output_max_bytes()
    if is_reference(task_id, value):
        return stored
    size = json_values.answer_bytes(value)
    if isinstance(value, list):
        for item in value:
            if isinstance(item, dict) and is_reference(task_id, item.get("value")):
                size += stored - json_values.answer_bytes(item["value"])
    return size


def _put(task_id: str, name: str, data: bytes) -> dict[str, Any] | None:
    """The reference to `data` written under the row's name; None when the bucket cannot be
    written (after the adapter's own retry).

    The caller then leaves the value inline, as outputs were kept before COS (at most
    STEP_OUTPUT_MAX_BYTES, which every answer is held to): the upstream's answer is paid
    for and never asked for again, and the task goes on. The log line says so; only that
    row's view is larger."""
    from app.storage.store import store  # cold start: the bucket only for a large output

    key = _key(task_id, name)
    try:
        store().put(key, data, "application/json")
    except StorageError as error:
        applog.log_fields(
            log,
            logging.WARNING,
            "output kept inline: the bucket could not be written",
            task_id=task_id,
            row=name,
            size_bytes=len(data),
            error=str(error),
        )
        return None
    return _reference(key, len(data))


def _key(task_id: str, name: str) -> str:
    return f"{task_prefix(task_id)}{name}.json"


def _reference(key: str, size_bytes: int) -> dict[str, Any]:
    return {"stored": True, "key": key, "size_bytes": size_bytes}


def is_reference(task_id: str, value: Any) -> bool:
    return (
        isinstance(value, dict)
        and value.keys() == _REFERENCE_FIELDS
        and value["stored"] is True
        and isinstance(value["key"], str)
        and value["key"].startswith(task_prefix(task_id))
        and _NAME.fullmatch(value["key"][len(task_prefix(task_id)) :]) is not None
        and isinstance(value["size_bytes"], int)
    )


def render(task_id: str, value: Any) -> Any:
    """`value` with the task's references (itself, or a fork's results' values) shown as
    StoredOutput."""
    if is_reference(task_id, value):
        return _shown(value)
    if isinstance(value, list) and any(
        isinstance(item, dict) and is_reference(task_id, item.get("value")) for item in value
    ):
        return [
            {**item, "value": _shown(item["value"])}
            if isinstance(item, dict) and is_reference(task_id, item.get("value"))
            else item
            for item in value
        ]
    return value


def shows_stored(value: Any) -> bool:
    """Whether a rendered value holds a StoredOutput (itself, or a fork result's value)."""

    def shown(item: Any) -> bool:
        return isinstance(item, dict) and item.get("stored") is True and "url" in item

    if shown(value):
        return True
    return isinstance(value, list) and any(
        isinstance(item, dict) and shown(item.get("value")) for item in value
    )


def _shown(reference: dict[str, Any]) -> dict[str, Any]:
    from app.storage.store import store  # cold start: the bucket only for a stored output

    signed = store().presign_get(reference["key"], URL_TTL_S)
    return {
        "stored": True,
        "url": signed.url,
        "size_bytes": reference["size_bytes"],
        "expires_at": iso(signed.expires_at),
    }
