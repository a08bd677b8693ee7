"""Outputs kept out of the database.

A step's, a branch's or a fork's output whose compact JSON is larger than
STORAGE_INLINE_MAX_BYTES is written to `tasks/{task_id}/{name}.json` before its row
settles, and the row holds only a reference, `{"stored": true, "key", "size_bytes"}`. The
key is the row's own (step id and branch), so a retry or a duplicate message writes the
same object again rather than a second one: whatever settles, one object counts.

Every view renders a reference as the API's `StoredOutput` (`{"stored": true, "url",
"size_bytes", "expires_at"}`, the URL a presigned GET valid URL_TTL_S from that read), and
so does the `previous` an upstream call receives. Only a reference under the task's own
prefix is one: an upstream that answers something shaped like a reference to another
task's object gets its answer shown as it is.
"""

from __future__ import annotations

import logging
from typing import Any

from app import json_values
from app.clock import iso
from app.config import get_settings
from app.observability import logging as applog
from app.storage.objects import StorageError, task_prefix

log = applog.get_logger("app.storage.outputs")

URL_TTL_S = 3600
_REFERENCE_FIELDS = {"stored", "key", "size_bytes"}


# A fork's results that do not fit inline are kept as references, each value that is not
# one yet written under its branch's own key, so that every value opens through its own
# StoredOutput (a fork's stored JSON holding references would be of no use to its reader).
# Values this small stay in place: a reference is about as large.
RESULT_INLINE_BYTES = 256


def keep_results(task_id: str, fork_id: str, results: list[Any]) -> Any:
    """A fork's joined results (`{"status", "value"}` per branch, in branch order), kept
    inline when they fit, else with their values as references."""
    if len(json_values.encode(results)) <= get_settings().storage_inline_max_bytes:
        return results
    kept = [
        {**item, "value": keep(task_id, f"{fork_id}.{index}", item["value"], RESULT_INLINE_BYTES)}
        if item.get("status") == "fulfilled" and not is_reference(task_id, item.get("value"))
        else item
        for index, item in enumerate(results)
    ]
    return keep(task_id, f"{fork_id}.-", kept)


def keep(task_id: str, name: str, value: Any, inline_max: int | None = None) -> Any:
    """`value`, or a reference to the object it was written to when it is too large to
    keep inline (past `inline_max`, by default STORAGE_INLINE_MAX_BYTES). `name` is the
    row's (e.g. `draft.-`, `variants.3`).

    A bucket that cannot be written (after the adapter's own retry) leaves the value inline,
    as outputs were kept before COS (at most STEP_OUTPUT_MAX_BYTES, which every answer is
    held to): the upstream's answer is paid for and never asked for again, and the task goes
    on. The log line says so; only that row's view is larger."""
    data = json_values.encode(value)
    if len(data) <= (inline_max or get_settings().storage_inline_max_bytes):
        return value
    from app.storage.store import store  # cold start: the bucket only for a large output

    key = f"{task_prefix(task_id)}{name}.json"
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
        return value
    return {"stored": True, "key": key, "size_bytes": len(data)}


def is_reference(task_id: str, value: Any) -> bool:
    return (
        isinstance(value, dict)
        and value.keys() == _REFERENCE_FIELDS
        and value["stored"] is True
        and isinstance(value["key"], str)
        and value["key"].startswith(task_prefix(task_id))
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
