"""Task verbs for the API: create (reserve + insert in one transaction, then publish), read,
list and cancel.

`create` with an Idempotency-Key first replays a stored answer for the key (or answers 409
for another body), before judging the request. Otherwise it claims the key in the same
transaction that reserves the quota and inserts the task, so the key, the charge and the
task commit together or not at all; a duplicate waits on the key, then replays the stored
first answer. A lock conflict runs that write again, alone, the key still claimed
(`idempotency.keyed_write`): the count and the HEADs before it are made once. The start message
goes out after the commit: a crash in between leaves a queued task with no message, which
the saga sweeper publishes again.

The cheap checks come first (the pipeline, the input's fit, in that order), then the count
of TASKS_PER_USER_PER_HOUR (`429 RATE_LIMITED` with Retry-After past it, nothing asked of
the bucket, nothing written), then the HEADs of the uploads the input names, then the
transaction. Each task is rows, a start message and the SCF invocations of its steps, drawn
from one account-wide budget every user shares, and cancelling gives its quota back, so the
quota alone does not bound how many a user makes. A replayed Idempotency-Key makes none and
counts none; a duplicate of one still in flight is answered with the first's answer past
the limit too (`idempotency.take_hourly`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from sqlalchemy import select

from app import idempotency, json_values
from app.clock import utcnow
from app.config import get_settings
from app.db import pages
from app.db.tables import task_steps, task_uploads, tasks
from app.db.transaction import Transaction, transaction
from app.errors import AppError, ErrorCode
from app.ids import is_id, new_id
from app.observability import logging as applog
from app.pipeline import messages, store
from app.pipeline.definition import ForkStep, ItemsError, Step, parse_steps, shape_of
from app.quota import service as quota
from app.quota.service import QUOTA_MAX
from app.redis_client import is_redis_error
from app.storage import shares, uploads
from app.tasks import hooks, lifecycle
from app.tasks.views import load_view, load_views, task_view

log = applog.get_logger("app.tasks.service")
IDEMPOTENCY_SCOPE = "tasks"
# A synchronous SCF answer stops at 6 MB. A page of `GET /tasks` stops before the item that
# would take its items past this many bytes of the answer (json_values.answer_bytes: the
# body escaped inside SCF's payload, up to three times its JSON); its next_cursor goes on
# from there, and the first item always goes. One item is at most 64 KiB of input and an
# output of STORAGE_INLINE_MAX_BYTES (16 KiB; a larger one is a StoredOutput of at most
# about 6 KB, app.storage.shares), so under 250 KB of answer. (An output kept inline
# because the bucket could not be written, or from before outputs went to COS, is at most
# 1 MiB: 3.2 MB of answer, alone on its page if it is past the bound.) So a page is under
# 4.2 MB.
PAGE_MAX_BYTES = 4 * 1024 * 1024


def _invalid_input(message: str) -> AppError:
    return AppError(
        ErrorCode.VALIDATION_ERROR,
        "The task input does not fit the pipeline.",
        details=[{"loc": ["body", "input"], "msg": message}],
    )


@dataclass(frozen=True)
class _Plan:
    """What a new task will run: a row per step and per fork branch, and its cost."""

    rows: list[dict[str, Any]]
    cost: int


def _plan(task_id: str, pipeline_cost: int, steps: list[Step], task_input: dict[str, Any]) -> _Plan:
    """One row per step and one per fork branch, all pending (stamped when inserted), and the
    cost: the pipeline's plus each fork's `cost_per_branch` times its branches. A fork's
    width is fixed here, from the input, so the runner never has to guess it; a task too
    wide for its view to fit one answer (app.storage.shares) is refused."""
    rows: list[dict[str, Any]] = []
    cost = pipeline_cost
    # The only place a for_each fork's width meets the limit: the runner reads it back uncapped.
    limit = get_settings().pipeline_max_branches

    def row(position: int, branch: int, step_id: str, kind: str) -> dict[str, Any]:
        return {
            "id": new_id(),
            "task_id": task_id,
            "position": position,
            "branch": branch,
            "step_id": step_id,
            "type": kind,
            "status": "pending",
            "attempts": 0,
        }

    for position, step in enumerate(steps):
        rows.append(row(position, -1, step.id, step.type))
        if isinstance(step, ForkStep):
            try:
                width = len(step.items(task_input, limit))
            except ItemsError as exc:
                raise _invalid_input(str(exc)) from exc
            if step.min_success is not None and step.min_success > width:
                raise _invalid_input(
                    f"step {step.id!r} needs {step.min_success} branches to succeed, "
                    f"the input gives {width}"
                )
            rows.extend(row(position, b, step.id, step.branch_step(b).type) for b in range(width))
            cost += step.cost_per_branch * width
    # As the runner counts them (each fork's width read back from the input, checked above).
    shape = shape_of(steps, task_input)
    if shares.too_wide(shape):
        raise _invalid_input(
            f"the task would have {shape.rows} steps and fork branches, more than its view "
            "can show in one answer even with every output kept in COS"
        )
    if cost > QUOTA_MAX:
        raise _invalid_input(f"the task would cost {cost}, more than any balance can hold")
    return _Plan(rows, cost)


def _take_rate(user_id: str, key: str | None, digest: str) -> None:
    """Count one task for the user, or raise RATE_LIMITED (`idempotency.take_hourly`: a
    duplicate of a keyed request still in flight gets that request's answer). Taken after
    the checks that cost a read or nothing, before the bucket is asked anything; it stays
    taken whatever follows (an upload refused, the quota short, the database): each has
    cost the HEADs and the transaction it bounds, and a count given back would let failing
    requests go unbounded. While Redis cannot answer the task is made uncounted: tasks run
    without Redis (README, "When Redis is down"), and no user can bring that about."""
    limit = get_settings().tasks_per_user_per_hour
    message = "Too many tasks; try again later."
    try:
        idempotency.take_hourly(
            f"tasks:rate:{user_id}",
            limit,
            message,
            user_id=user_id,
            scope=IDEMPOTENCY_SCOPE,
            key=key,
            digest=digest,
        )
    except Exception as exc:
        if not is_redis_error(exc):
            raise
        applog.log_fields(log, logging.WARNING, "task rate not counted", error=type(exc).__name__)


def _steps_of(pipeline: dict[str, Any]) -> list[Step]:
    """The pipeline's saved steps. Ones this release cannot read were saved by a newer one,
    during a deploy or before a rollback, with a step field this one does not know (README,
    "Deploy": a new field takes two deploys): `503`, as for a dependency not ready, rather
    than a 500 or a task run without what its step says. Logged by the pipeline's id and the
    number of errors, never the definition (its headers may hold a secret's reference)."""
    try:
        return parse_steps(pipeline["steps"])
    except ValidationError as unreadable:
        applog.log_fields(
            log,
            logging.ERROR,
            "pipeline definition not readable",
            pipeline_id=pipeline["id"],
            errors=unreadable.error_count(),
        )
        raise AppError(
            ErrorCode.SERVICE_UNAVAILABLE, "This pipeline cannot be run now; try again later."
        ) from None


def _create_once(
    user_id: str, pipeline_id: str, task_input: dict[str, Any], key: str | None, digest: str
) -> dict[str, Any]:
    # Read on its own, before the HEADs: the task runs (and is charged) the definition read
    # here, as it would had the request come those seconds earlier.
    with transaction() as conn:
        pipeline = store.get_enabled(conn, pipeline_id)
    if pipeline is None:
        raise AppError(ErrorCode.PIPELINE_NOT_FOUND, "No such pipeline.")
    task_id = new_id()
    plan = _plan(task_id, int(pipeline["cost"]), _steps_of(pipeline), task_input)
    upload_keys = uploads.named_by(user_id, task_input)
    _take_rate(user_id, key, digest)
    # Before the transaction: a HEAD per upload key the input names, at the bucket.
    uploads.check(upload_keys)
    # A lock conflict runs the write again, not the count or the HEADs before it; the key
    # stays claimed across its tries (`idempotency.keyed_write`).
    return idempotency.keyed_write(
        user_id,
        IDEMPOTENCY_SCOPE,
        key,
        digest,
        lambda conn: _write(conn, user_id, task_id, pipeline, plan, task_input, upload_keys, key),
    )


def _write(
    conn: Transaction,
    user_id: str,
    task_id: str,
    pipeline: dict[str, Any],
    plan: _Plan,
    task_input: dict[str, Any],
    upload_keys: list[str],
    key: str | None,
) -> dict[str, Any]:
    """The quota reserved, the task and its steps inserted and the key's answer recorded,
    in the transaction that claimed the key; its start message and hooks after the
    commit."""
    cost = plan.cost
    if cost > 0:
        quota.reserve(user_id, task_id, cost, tx=conn)
    now = utcnow()
    conn.execute(
        tasks.insert().values(
            id=task_id,
            user_id=user_id,
            # The row's id, not the request's: the database finds `"demo "` as `demo`.
            pipeline_id=pipeline["id"],
            status="queued",
            cost=cost,
            input=task_input,
            steps=pipeline["steps"],
            created_at=now,
            updated_at=now,
        )
    )
    stamped = [{**row, "created_at": now, "updated_at": now} for row in plan.rows]
    conn.execute(task_steps.insert(), stamped)
    if upload_keys:
        conn.execute(task_uploads.insert(), [{"task_id": task_id, "key": k} for k in upload_keys])
    view = load_view(conn, task_id)
    assert view is not None
    if key is not None:
        idempotency.record(conn, user_id, IDEMPOTENCY_SCOPE, key, view, task_id)
    conn.after_commit(lambda: hooks.task_updated(view), task_id=task_id)
    # A start message lost here leaves a queued task, which the sweeper starts again.
    conn.after_commit(lambda: messages.publish_step(task_id, 0), task_id=task_id)
    return view


@dataclass(frozen=True)
class Created:
    """The task a create made, or for a known key the one its first request made."""

    task: dict[str, Any]
    replayed: bool


def create(
    user_id: str, pipeline_id: str, task_input: dict[str, Any], key: str | None = None
) -> Created:
    """A new task, charged and queued; with an Idempotency-Key (validated by the caller)
    the first request's task for a known key."""
    digest = idempotency.request_hash({"pipeline_id": pipeline_id, "input": task_input})
    answered = idempotency.create_once(
        user_id,
        IDEMPOTENCY_SCOPE,
        key,
        digest,
        lambda: _create_once(user_id, pipeline_id, task_input, key, digest),
    )
    return Created(answered.response, replayed=answered.replayed)


def _known_shape(task_id: str) -> str:
    """`task_id` when it has the shape of one, else `404`: the database compares ids with
    trailing spaces ignored, so `"<id> "` would read the task, and garbage needs no query."""
    if not is_id(task_id):
        raise AppError(ErrorCode.NOT_FOUND, "Task not found.")
    return task_id


def get(user_id: str, task_id: str) -> dict[str, Any]:
    _known_shape(task_id)
    with transaction() as conn:
        row = (
            conn.execute(select(tasks).where(tasks.c.id == task_id, tasks.c.user_id == user_id))
            .mappings()
            .first()
        )
        if row is None:
            raise AppError(ErrorCode.NOT_FOUND, "Task not found.")
        return load_views(conn, [row])[0]


def list_for(
    user_id: str, status: str | None, limit: int, cursor: str | None
) -> pages.Page[dict[str, Any]]:
    """The user's tasks, newest first; a page ends early past PAGE_MAX_BYTES."""
    query = select(tasks).where(tasks.c.user_id == user_id)
    if status is not None:
        query = query.where(tasks.c.status == status)
    query = pages.newest_first(query, tasks.c.created_at, tasks.c.id, cursor=cursor, limit=limit)
    with transaction() as conn:
        rows, next_cursor = pages.split(list(conn.execute(query).mappings()), limit)
    items = [task_view(row, None) for row in rows]
    size = 0
    for kept, item in enumerate(items):
        size += json_values.answer_bytes(item) + 1
        if kept and size > PAGE_MAX_BYTES:
            return pages.Page(items[:kept], pages.encode(rows[kept - 1]))
    return pages.Page(items, next_cursor)


def cancel(user_id: str, task_id: str) -> dict[str, Any]:
    return lifecycle.cancel(_known_shape(task_id), user_id=user_id)
