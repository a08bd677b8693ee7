"""cos-cleanup (timer at 03:00 Asia/Shanghai, and POST /admin/jobs/cos-cleanup), and the
batch delete that data deleted on purpose goes through (`purge`).

A run:
1. ensures the bucket's lifecycle: our rules `ai-platform-tasks` and `ai-platform-uploads`
   (prefixes `tasks/` and `uploads/`, expire after RESULT_RETENTION_DAYS, abort incomplete
   multipart uploads after 1 day) merged by ID into the rules the bucket has, which stay; a
   PUT only when the merged configuration differs from what was read;
2. lists `tasks/` and `uploads/` page by page and decides each page's orphans in one SQL
   query: `tasks/{id}/...` whose task does not exist, failed or was cancelled, and
   `uploads/{user}/{id}` that no task names (`task_uploads`), when their LastModified is
   older than COS_ORPHAN_GRACE_S. Anything else under those prefixes, and every other
   prefix, is never deleted;
3. deletes them in full DeleteObjects batches of 1000 keys (the last holds the rest),
   counting per-key failures, which stay for the next run.

Each run has a `maintenance_runs` row (app.db.runs), written at its start and updated after
every batch, so a run that dies half way leaves what it had deleted; a rerun lists only what
is still there and so deletes nothing twice. While a run is live another one does not start
(RunBusy); a run dead for runs.STALE_RUN_S no longer counts as live.

Owns: which objects are orphans, the lifecycle rules' content, the batch delete's counts.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import select

from app.clock import utcnow
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
    scanned: int = 0


def run() -> dict[str, Any]:
    """One cleanup pass; the report `{"scanned", "deleted", "deleted_bytes", "failed",
    "saved_cny_per_month"}`. Raises CleanupInterrupted (its row closed as failed, its report
    what it had done) when COS or the database fails half way."""
    settings = get_settings()
    price = settings.cos_price_cny_per_gb_month
    # The bucket before the run's row: a bucket that cannot be built (no credentials, a
    # malformed endpoint) must not leave a `running` row that refuses the next run.
    try:
        bucket = store()
    except StorageError as error:
        raise AppError(ErrorCode.SERVICE_UNAVAILABLE, f"{JOB}: {error}") from error
    current = _Run(runs.start(JOB))

    def progress(delta: Counts) -> None:
        COS_CLEANUP_DELETED_OBJECTS.inc(delta.deleted)
        COS_CLEANUP_DELETED_BYTES.inc(delta.deleted_bytes)
        _update(current, deleter.counts, price)

    deleter = BatchDeleter(bucket, on_batch=progress)
    try:
        rewritten = ensure_lifecycle(bucket, settings.result_retention_days)
        cutoff = utcnow() - timedelta(seconds=settings.cos_orphan_grace_s)
        for prefix in (TASKS, UPLOADS):
            marker: str | None = None
            while True:
                page = bucket.listing(prefix, marker)
                current.scanned += len(page.objects)
                aged = [obj for obj in page.objects if obj.last_modified < cutoff]
                for obj in orphans(aged):
                    deleter.add(obj)
                if page.next_marker is None:
                    break
                marker = page.next_marker
        deleter.close()
    except Exception as error:
        cause = str(error) if isinstance(error, StorageError) else type(error).__name__
        report = _report(current, deleter.counts, price)
        _close(current, deleter.counts, price, "failed", cause)
        _count_items(report)
        raise CleanupInterrupted(report, cause) from error
    report = _report(current, deleter.counts, price)
    _close(current, deleter.counts, price, "ok", None)
    _count_items(report)
    applog.log_fields(
        log, logging.INFO, "cos cleanup", run_id=current.id, lifecycle_rewritten=rewritten, **report
    )
    return report


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
    }


def saved_cny_per_month(deleted_bytes: int, price_cny_per_gb_month: float) -> float:
    return round(deleted_bytes / GIB * price_cny_per_gb_month, 6)


def _count_items(report: dict[str, Any]) -> None:
    for kind in ("scanned", "deleted", "failed"):
        if report[kind]:
            JOB_ITEMS.labels(JOB, kind).inc(report[kind])


def _update(current: _Run, counts: Counts, price: float) -> None:
    runs.update_counts(current.id, **_report(current, counts, price))


def _close(current: _Run, counts: Counts, price: float, status: str, error: str | None) -> None:
    runs.finish(current.id, status, error, **_report(current, counts, price))


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
