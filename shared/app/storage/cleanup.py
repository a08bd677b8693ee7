"""cos-cleanup (timer at 03:00 Asia/Shanghai, and POST /admin/jobs/cos-cleanup), and the
batch delete that data deleted on purpose goes through (`purge`).

A run:
1. ensures the bucket's lifecycle: our rules `ai-platform-tasks` and `ai-platform-uploads`
   (prefixes `tasks/` and `uploads/`, expire after RESULT_RETENTION_DAYS, abort incomplete
   multipart uploads after 1 day) merged by ID into the rules the bucket has, which stay; a
   PUT only when the merged configuration differs from what was read; and the bucket
   policy's statements that keep every upload private (app.storage.bucket_policy), merged
   the same way into the statements it has;
2. lists `tasks/` and `uploads/` page by page and decides each page's orphans in one SQL
   query: `tasks/{id}/...` whose task does not exist, failed or was cancelled, and
   `uploads/{user}/{id}` that no task names (`task_uploads`), when their LastModified is
   older than COS_ORPHAN_GRACE_S. Anything else under those prefixes, and every other
   prefix, is never deleted;
3. deletes them in full DeleteObjects batches of 1000 keys (the last holds the rest),
   counting per-key failures, which stay for the next run.

A run has RUN_BUDGET_S, checked before each listing page: once it is spent the run lists no
further, sends what it had queued and ends `ok` with `stopped_early`, its row holding the
last key it went through (`resume_after`). The next run lists after that key and the one
that reaches the end starts the next from the beginning: keys are random ids, so a bucket
too large for one run, listed from the start every time, would have the same first pages
gone over again and again and its last ones (and all of uploads/) never.

Each run has a `maintenance_runs` row (app.db.runs), written at its start and updated after
every batch, so a run that dies half way leaves what it had deleted; a rerun lists only what
is still there and so deletes nothing twice. A run that fails or dies leaves the row's
`resume_after` as it found it: the next goes over its stretch again. While a run is live
another one does not start (RunBusy); a run dead for runs.STALE_RUN_S no longer counts as
live.

Owns: which objects are orphans, the lifecycle rules' content, the batch delete's counts.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select

from app.clock import run_budget_s, utcnow
from app.config import get_settings
from app.db import runs
from app.db.tables import task_uploads, tasks
from app.db.transaction import transaction
from app.errors import AppError, ErrorCode
from app.observability import logging as applog
from app.observability.metrics import (
    COS_CLEANUP_DELETED_BYTES,
    COS_CLEANUP_DELETED_OBJECTS,
    JOB_ITEMS,
)
from app.storage.bucket_policy import ensure_policy
from app.storage.objects import (
    DELETE_BATCH,
    TASKS,
    UPLOADS,
    ObjectInfo,
    ObjectStore,
    StorageError,
    task_prefix,
)
from app.storage.store import store

log = applog.get_logger("app.storage.cleanup")
JOB = "cos-cleanup"
RULE_TASKS = "ai-platform-tasks"
RULE_UPLOADS = "ai-platform-uploads"
ABORT_MULTIPART_DAYS = 1
# The task statuses whose objects no one reads again: app.tasks.lifecycle's terminal ones but
# succeeded (named here because storage sits below tasks in the layers; a test keeps them so).
DEAD_TASK_STATUSES = ("failed", "cancelled")
GIB = 2**30
# What a run may still spend once its budget's last check passed: a page listed, its orphans
# decided and a full batch sent, the rest sent, the row closed (a COS request takes up to
# 21 s with its retry, app.storage.cos).
AFTER_LAST_CHECK_S = 90
# The cos-cleanup function, and admin-jobs-run that runs it on demand, have 600 s
# (serverless.yml; a test keeps them at least this plus AFTER_LAST_CHECK_S): a run that is
# not done by then stops listing, so it ends before the platform kills it.
RUN_BUDGET_S = 480.0


class CleanupInterrupted(AppError):
    """The run stopped on an error (COS or the database failing half way): 503 to an admin;
    `report` is what it had done, as its row says."""

    def __init__(self, report: dict[str, Any], cause: str) -> None:
        super().__init__(
            ErrorCode.SERVICE_UNAVAILABLE,
            f"{JOB} stopped: {cause}; done before it stopped: {report}",
        )
        self.report = report


@dataclass
class Counts:
    """What deleting did: objects COS said it deleted, their bytes, keys it did not delete."""

    deleted: int = 0
    deleted_bytes: int = 0
    failed: int = 0


class BatchDeleter:
    """Objects queued for deletion leave in full DeleteObjects batches of DELETE_BATCH keys;
    `close()` sends the rest. `on_batch(delta)` runs after each request with its counts."""

    def __init__(
        self, bucket: ObjectStore, on_batch: Callable[[Counts], None] | None = None
    ) -> None:
        self.bucket = bucket
        self.counts = Counts()
        self._on_batch = on_batch
        self._pending: dict[str, int] = {}  # key -> size in bytes

    def add(self, obj: ObjectInfo) -> None:
        self._pending[obj.key] = obj.size_bytes
        if len(self._pending) >= DELETE_BATCH:
            self._send()

    def close(self) -> Counts:
        while self._pending:
            self._send()
        return self.counts

    def _send(self) -> None:
        keys = list(self._pending)[:DELETE_BATCH]
        sizes = {key: self._pending.pop(key) for key in keys}
        result = self.bucket.delete(keys)
        delta = Counts(
            deleted=len(result.deleted),
            deleted_bytes=sum(sizes.get(key, 0) for key in result.deleted),
            failed=len(result.failed),
        )
        self.counts.deleted += delta.deleted
        self.counts.deleted_bytes += delta.deleted_bytes
        self.counts.failed += delta.failed
        if self._on_batch is not None:
            self._on_batch(delta)


# ------------------------------------------------------------ lifecycle


def our_rules(retention_days: int) -> list[dict[str, Any]]:
    return [
        _rule(RULE_TASKS, TASKS, retention_days),
        _rule(RULE_UPLOADS, UPLOADS, retention_days),
    ]


def _rule(rule_id: str, prefix: str, days: int) -> dict[str, Any]:
    return {
        "ID": rule_id,
        "Filter": {"Prefix": prefix},
        "Status": "Enabled",
        "Expiration": {"Days": days},
        "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": ABORT_MULTIPART_DAYS},
    }


def ensure_lifecycle(bucket: ObjectStore, retention_days: int) -> bool:
    """Our rules in the bucket's configuration, the others kept as read; True when it had
    to be written (a PUT replaces the whole configuration, so only then)."""
    current = bucket.lifecycle()
    ours = our_rules(retention_days)
    our_ids = {rule["ID"] for rule in ours}
    merged = [rule for rule in current if rule.get("ID") not in our_ids] + ours
    if _by_id(merged) == _by_id(current):
        return False
    bucket.put_lifecycle(merged)
    return True


def _by_id(rules: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Rules compared as COS gives them back: numbers as text, empty elements absent."""
    return {str(rule.get("ID")): _canonical(rule) for rule in rules}


def _canonical(value: Any) -> Any:
    if isinstance(value, dict):
        pairs = {str(k): _canonical(v) for k, v in value.items()}
        return {k: v for k, v in pairs.items() if v not in (None, "", {}, [])}
    if isinstance(value, (list, tuple)):
        return [_canonical(item) for item in value]
    return None if value is None else str(value)


# ------------------------------------------------------------ orphans


def _task_id(key: str) -> str | None:
    """The id in `tasks/{id}/...`; None for a key of another shape (never ours to delete)."""
    task_id, slash, _ = key[len(TASKS) :].partition("/")
    return task_id if key.startswith(TASKS) and slash and task_id else None


def _is_upload_key(key: str) -> bool:
    parts = key[len(UPLOADS) :].split("/")
    return key.startswith(UPLOADS) and len(parts) == 2 and all(parts)


def orphans(objects: Sequence[ObjectInfo]) -> list[ObjectInfo]:
    """Which of these objects (one listing page, already past the grace) no one needs: one
    query for the tasks they belong to, one for the uploads tasks name."""
    by_task: dict[str, list[ObjectInfo]] = {}
    uploads: list[ObjectInfo] = []
    for obj in objects:
        task_id = _task_id(obj.key)
        if task_id is not None:
            by_task.setdefault(task_id, []).append(obj)
        elif _is_upload_key(obj.key):
            uploads.append(obj)
    if not by_task and not uploads:
        return []
    with transaction() as tx:
        live: set[str] = set()
        if by_task:
            rows = tx.execute(
                select(tasks.c.id).where(
                    tasks.c.id.in_(list(by_task)), tasks.c.status.not_in(DEAD_TASK_STATUSES)
                )
            )
            live = {str(task_id) for task_id in rows.scalars()}
        named: set[str] = set()
        if uploads:
            wanted = list({obj.key for obj in uploads})
            rows = tx.execute(
                select(task_uploads.c.key).where(task_uploads.c.key.in_(wanted)).distinct()
            )
            named = {str(key) for key in rows.scalars()}
    dead = [obj for task_id, objs in by_task.items() if task_id not in live for obj in objs]
    return dead + [obj for obj in uploads if obj.key not in named]


# ------------------------------------------------------------ the job


@dataclass
class _Run:
    id: str
    # The last key of the last page decided and handed to the deleter: where the next run
    # goes on from when this one stops for its budget (None: from the start).
    position: str | None
    scanned: int = 0
    stopped_early: bool = False


def run(budget_s: float | None = None) -> dict[str, Any]:
    """One cleanup run, from where the last one stopped; the report `{"scanned", "deleted",
    "deleted_bytes", "failed", "saved_cny_per_month", "stopped_early"}`. Once `budget_s`
    is spent it lists no further page: it sends what it had queued and ends `ok` with
    `stopped_early`, and the next run goes on after the last key it went through. Without a
    `budget_s`, RUN_BUDGET_S, or less when the invocation it runs in (its timer's, an
    admin's) ends sooner than AFTER_LAST_CHECK_S after it. Raises CleanupInterrupted (its
    row closed as failed, its report what it had done) when COS or the database fails half
    way."""
    if budget_s is None:
        budget_s = run_budget_s(RUN_BUDGET_S, AFTER_LAST_CHECK_S)
    ends_at = time.monotonic() + budget_s
    settings = get_settings()
    price = settings.cos_price_cny_per_gb_month
    # The bucket before the run's row: a bucket that cannot be built (no credentials, a
    # malformed endpoint) must not leave a `running` row that refuses the next run.
    try:
        bucket = store()
    except StorageError as error:
        raise AppError(ErrorCode.SERVICE_UNAVAILABLE, f"{JOB}: {error}") from error
    started = runs.start(JOB, carry=("resume_after",))
    current = _Run(started.id, position=started.carried.get("resume_after"))

    def progress(delta: Counts) -> None:
        COS_CLEANUP_DELETED_OBJECTS.inc(delta.deleted)
        COS_CLEANUP_DELETED_BYTES.inc(delta.deleted_bytes)
        runs.update_counts(current.id, **_report(current, deleter.counts, price))

    deleter = BatchDeleter(bucket, on_batch=progress)
    try:
        rewritten = ensure_lifecycle(bucket, settings.result_retention_days)
        policy_rewritten = ensure_policy(bucket, settings.cos_region, settings.cos_bucket)
        cutoff = utcnow() - timedelta(seconds=settings.cos_orphan_grace_s)
        _sweep(bucket, deleter, current, cutoff, ends_at)
        deleter.close()
    except Exception as error:
        cause = str(error) if isinstance(error, StorageError) else type(error).__name__
        report = _report(current, deleter.counts, price)
        # The row keeps the resume_after this run started from: what it queued past it may
        # not have been sent, so the next run goes over that stretch again.
        runs.finish(current.id, "failed", cause, **report)
        _count_items(report)
        raise CleanupInterrupted(report, cause) from error
    report = _report(current, deleter.counts, price)
    # A run that went through the whole listing leaves the next to start from the beginning.
    resume_after = current.position if current.stopped_early else None
    runs.finish(current.id, "ok", resume_after=resume_after, **report)
    _count_items(report)
    applog.log_fields(
        log,
        logging.INFO,
        "cos cleanup",
        run_id=current.id,
        lifecycle_rewritten=rewritten,
        policy_rewritten=policy_rewritten,
        resume_after=resume_after,
        **report,
    )
    return report


def _sweep(
    bucket: ObjectStore, deleter: BatchDeleter, current: _Run, cutoff: datetime, ends_at: float
) -> None:
    """The orphans of `tasks/` and `uploads/`, page by page after `current.position`, into
    the deleter; before each page, the budget: once `ends_at` has passed, no more pages."""
    resume_after = current.position
    for prefix in (TASKS, UPLOADS):
        marker = resume_after
        if resume_after is not None and not resume_after.startswith(prefix):
            # The prefixes go in key order (COS's, UTF-8 bytes: str order): the last run
            # went past this one, or never reached it.
            if resume_after > prefix:
                continue
            marker = None
        while True:
            if time.monotonic() >= ends_at:
                current.stopped_early = True
                return
            page = bucket.listing(prefix, marker)
            current.scanned += len(page.objects)
            aged = [obj for obj in page.objects if obj.last_modified < cutoff]
            for obj in orphans(aged):
                deleter.add(obj)
            if page.objects:
                current.position = page.objects[-1].key
            if page.next_marker is None:
                break
            marker = page.next_marker


def run_timer(_event: Any = None) -> dict[str, Any]:
    """The timer function's job: the timer wrapper logs and counts the run."""
    return run()


def _report(current: _Run, counts: Counts, price: float) -> dict[str, Any]:
    """The run's counts: its report, and its maintenance_runs row's columns alike."""
    return {
        "scanned": current.scanned,
        "deleted": counts.deleted,
        "deleted_bytes": counts.deleted_bytes,
        "failed": counts.failed,
        "saved_cny_per_month": saved_cny_per_month(counts.deleted_bytes, price),
        "stopped_early": current.stopped_early,
    }


def saved_cny_per_month(deleted_bytes: int, price_cny_per_gb_month: float) -> float:
    return round(deleted_bytes / GIB * price_cny_per_gb_month, 6)


def _count_items(report: dict[str, Any]) -> None:
    for kind in ("scanned", "deleted", "failed"):
        if report[kind]:
            JOB_ITEMS.labels(JOB, kind).inc(report[kind])


# ------------------------------------------------------------ deleting on purpose


def purge(targets: Iterable[str]) -> Counts:
    """Delete on purpose (an account deleted, a task purged): each target a prefix of ours
    (`tasks/{id}/`, `uploads/{user}/`), listed and deleted, or one key of ours; all through
    the same full batches. Bytes are counted for what was listed (a key alone has no size
    here). Raises ValueError for a target outside `tasks/{id}/` and `uploads/{user}/`."""
    wanted = list(targets)
    for target in wanted:
        _check_target(target)
    bucket = store()
    deleter = BatchDeleter(bucket)
    now = utcnow()
    for target in wanted:
        if not target.endswith("/"):
            deleter.add(ObjectInfo(key=target, size_bytes=0, last_modified=now))
            continue
        marker: str | None = None
        while True:
            page = bucket.listing(target, marker)
            for obj in page.objects:
                deleter.add(obj)
            if page.next_marker is None:
                break
            marker = page.next_marker
    return deleter.close()


def delete_prefix(prefix: str) -> Counts:
    return purge([prefix])


def purge_task(task_id: str) -> Counts:
    return purge([task_prefix(task_id)])


def _check_target(target: str) -> None:
    namespace = TASKS if target.startswith(TASKS) else UPLOADS
    owner, slash, _ = target[len(namespace) :].partition("/")
    if not target.startswith(namespace) or not owner or not slash:
        raise ValueError(f"not a prefix or key of ours to purge: {target!r}")
