"""cos-cleanup against FakeCos with planted objects and real task rows: what it deletes and
what it never touches, full batches of 1000 counted at the fake, the lifecycle merged and
written only when it changed, and a run stopped half way by COS that leaves a truthful
report and row and is finished by the next run without deleting anything twice."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import delete, insert, select, update

from app.api.admin_jobs import run_job
from app.clock import invocation_ending, utcnow
from app.db.runs import STALE_RUN_S
from app.db.tables import maintenance_runs, task_uploads, tasks
from app.db.transaction import transaction
from app.errors import RunBusy
from app.ids import new_id
from app.observability.metrics import COS_CLEANUP_DELETED_BYTES, COS_CLEANUP_DELETED_OBJECTS
from app.storage import cleanup
from app.storage.cleanup import CleanupInterrupted
from app.storage.objects import task_prefix, upload_key
from app.storage.store import store
from app.tasks import lifecycle
from infra import manifest
from tests.fakes.cos import FakeCos
from tests.support.audit import actions_on, an_actor
from tests.support.function_url import Reply
from tests.support.functions import admin_job, handler
from tests.support.logs import capture_logs
from tests.support.pipelines import token_for
from tests.support.quota import new_user
from tests.support.runs import end_live_runs, plant_live_run
from tests.support.settings import settings_env

OLD = utcnow() - timedelta(hours=2)  # past COS_ORPHAN_GRACE_S (3600)
FRESH = utcnow() - timedelta(minutes=10)


def new_task(status: str, upload_keys: tuple[str, ...] = ()) -> str:
    task_id, now = new_id(), utcnow()
    with transaction() as tx:
        tx.execute(
            insert(tasks).values(
                id=task_id,
                user_id=new_id(),
                pipeline_id="p-cleanup",
                status=status,
                cost=1,
                input={"image": upload_keys[0]} if upload_keys else {},
                steps=[],
                created_at=now,
                updated_at=now,
            )
        )
        for key in upload_keys:
            tx.execute(insert(task_uploads).values(task_id=task_id, key=key))
    return task_id


def runs_after(seen: set[str]) -> list[dict[str, Any]]:
    with transaction() as tx:
        rows = tx.execute(
            select(maintenance_runs).where(maintenance_runs.c.job == cleanup.JOB)
        ).mappings()
        return [dict(row) for row in rows if row["id"] not in seen]


def run_ids() -> set[str]:
    return {str(row["id"]) for row in runs_after(set())}


@pytest.fixture(autouse=True)
def _no_live_run() -> Iterator[None]:
    yield
    end_live_runs(cleanup.JOB)


def test_orphans_past_the_grace_go_and_nothing_else(cos: FakeCos) -> None:
    named = upload_key("u1", "named")
    ids = {status: new_task(status) for status in ("queued", "running", "succeeded")}
    failed, cancelled = new_task("failed"), new_task("cancelled")
    new_task("succeeded", (named,))
    missing = new_id()
    kept = [
        *(f"{task_prefix(task_id)}out.json" for task_id in ids.values()),
        named,
        upload_key("u1", "fresh"),  # planted FRESH below
        f"{task_prefix(failed)}fresh.json",  # planted FRESH below
        "uploads/u1/x/not-an-upload-key",
        "tasks/not-under-a-task",
        "logs/2026/app.log",
        "packages/app/abc.zip",
    ]
    gone = {
        f"{task_prefix(failed)}out.json": 100,
        f"{task_prefix(cancelled)}a/b.json": 200,
        f"{task_prefix(missing)}out.json": 8 * 2**20,
        upload_key("u2", "orphan"): 400,
    }
    for key in kept:
        cos.plant(key, b"k" * 10, last_modified=FRESH if "fresh" in key else OLD)
    for key, size in gone.items():
        cos.plant(key, b"g" * size, last_modified=OLD)
    deleted_before = COS_CLEANUP_DELETED_OBJECTS.value()
    bytes_before = COS_CLEANUP_DELETED_BYTES.value()
    seen = run_ids()

    report = cleanup.run()

    assert sorted(cos.keys()) == sorted(kept)
    under_ours = [k for k in kept + list(gone) if k.startswith(("tasks/", "uploads/"))]
    assert report == {
        "scanned": len(under_ours),
        "deleted": 4,
        "deleted_bytes": 8 * 2**20 + 700,
        "failed": 0,
        "saved_cny_per_month": 0.000922,  # 8 MiB at 0.118 CNY per GiB and month
        "stopped_early": False,
    }
    assert cos.count("DeleteObjects") == 1
    (row,) = runs_after(seen)
    assert row["status"] == "ok" and row["error"] is None and row["finished_at"] is not None
    assert {k: row[k] for k in report} == report
    assert COS_CLEANUP_DELETED_OBJECTS.value() - deleted_before == 4
    assert COS_CLEANUP_DELETED_BYTES.value() - bytes_before == 8 * 2**20 + 700


def test_2500_orphans_go_in_exactly_3_delete_requests(cos: FakeCos) -> None:
    task_ids = [new_id() for _ in range(3)]  # no such tasks
    for i in range(1500):
        cos.plant(f"{task_prefix(task_ids[i % 3])}{i:05d}.json", b"x" * 3, last_modified=OLD)
    for i in range(1000):
        cos.plant(upload_key(f"user{i % 7}", f"{i:05d}"), b"y" * 5, last_modified=OLD)

    report = cleanup.run()

    assert report["scanned"] == 2500 and report["deleted"] == 2500 and report["failed"] == 0
    assert report["deleted_bytes"] == 1500 * 3 + 1000 * 5
    assert cos.keys() == []
    assert cos.count("DeleteObjects") == 3
    # one page per 1000 listed, and at most one empty page per prefix beyond that
    assert 3 <= cos.count("ListObjects") <= 5


def test_lifecycle_merged_with_a_foreign_rule_and_not_rewritten_unchanged(cos: FakeCos) -> None:
    foreign = {
        "ID": "logs-7-days",
        "Filter": {"Prefix": "logs/"},
        "Status": "Enabled",
        "Expiration": {"Days": 7},
    }
    changed_by_hand = {**cleanup.our_rules(30)[0], "Expiration": {"Days": 5}}
    store().put_lifecycle([foreign, changed_by_hand])
    puts = cos.count("PutBucketLifecycle")

    cleanup.run()

    rules = {rule["ID"]: rule for rule in cos.lifecycle_rules()}
    assert rules == {
        "logs-7-days": {
            "ID": "logs-7-days",
            "Prefix": "logs/",
            "Status": "Enabled",
            "ExpirationDays": "7",
            "AbortDays": None,
        },
        "ai-platform-tasks": {
            "ID": "ai-platform-tasks",
            "Prefix": "tasks/",
            "Status": "Enabled",
            "ExpirationDays": "30",
            "AbortDays": "1",
        },
        "ai-platform-uploads": {
            "ID": "ai-platform-uploads",
            "Prefix": "uploads/",
            "Status": "Enabled",
            "ExpirationDays": "30",
            "AbortDays": "1",
        },
    }
    assert cos.count("PutBucketLifecycle") == puts + 1

    cleanup.run()
    cleanup.run()
    assert cos.count("PutBucketLifecycle") == puts + 1
    assert cos.count("GetBucketLifecycle") == 3


def test_a_bucket_without_rules_gets_ours_once(cos: FakeCos) -> None:
    cleanup.run()
    assert {r["ID"] for r in cos.lifecycle_rules()} == {"ai-platform-tasks", "ai-platform-uploads"}
    cleanup.run()
    assert cos.count("PutBucketLifecycle") == 1


def test_a_rerun_deletes_nothing(cos: FakeCos) -> None:
    for _ in range(5):
        cos.plant(f"{task_prefix(new_id())}out.json", b"z", last_modified=OLD)
    assert cleanup.run()["deleted"] == 5
    deletes = cos.count("DeleteObjects")
    again = cleanup.run()
    assert again["deleted"] == 0 and again["deleted_bytes"] == 0 and again["scanned"] == 0
    assert cos.count("DeleteObjects") == deletes


def test_a_key_cos_refuses_to_delete_is_counted_and_stays(cos: FakeCos) -> None:
    refused = f"{task_prefix(new_id())}out.json"
    cos.plant(refused, b"r" * 7, last_modified=OLD)
    cos.plant(upload_key("u9", "gone"), b"g" * 3, last_modified=OLD)
    cos.refuse_keys([refused])
    report = cleanup.run()
    assert (report["deleted"], report["deleted_bytes"], report["failed"]) == (1, 3, 1)
    assert cos.keys() == [refused]


def test_a_cos_error_half_way_leaves_a_truthful_report_and_row(cos: FakeCos) -> None:
    for i in range(2500):
        cos.plant(f"{task_prefix(new_id())}{i}.json", b"q" * 2, last_modified=OLD)
    cos.fail_after("DeleteObjects", 1)  # the first batch goes, the second fails (and its retry)
    seen = run_ids()

    with pytest.raises(CleanupInterrupted) as stopped:
        cleanup.run()

    # the listing stopped at the page whose batch failed: 2 pages of 1000 were scanned
    assert stopped.value.report == {
        "scanned": 2000,
        "deleted": 1000,
        "deleted_bytes": 2000,
        "failed": 0,
        "saved_cny_per_month": round(2000 / 2**30 * 0.118, 6),
        "stopped_early": False,
    }
    assert "COS DeleteObjects failed: 500 InternalError" in str(stopped.value)
    assert cos.secret_key not in str(stopped.value)
    (row,) = runs_after(seen)
    assert row["status"] == "failed" and row["finished_at"] is not None
    assert row["error"] == "COS DeleteObjects failed: 500 InternalError"
    assert {k: row[k] for k in stopped.value.report} == stopped.value.report
    assert len(cos.keys()) == 1500
    assert cos.count("DeleteObjects") == 3  # 1 served, 1 failed and its retry

    cos.heal()
    report = cleanup.run()
    assert (report["scanned"], report["deleted"], report["deleted_bytes"]) == (1500, 1500, 3000)
    assert cos.keys() == []
    assert cos.count("DeleteObjects") == 5  # the rest: 1000 and 500, nothing sent twice


def test_a_dead_run_is_closed_and_a_live_one_blocks_another(cos: FakeCos) -> None:
    dead, live = new_id(), new_id()
    long_ago = utcnow() - timedelta(seconds=STALE_RUN_S + 60)
    with transaction() as tx:
        tx.execute(
            insert(maintenance_runs).values(
                id=dead, job=cleanup.JOB, status="running", started_at=long_ago, deleted=7
            )
        )
    cleanup.run()
    (row,) = (r for r in runs_after(set()) if r["id"] == dead)
    assert row["status"] == "failed" and row["deleted"] == 7
    assert row["error"] == "stopped before its end"

    with transaction() as tx:
        tx.execute(
            insert(maintenance_runs).values(
                id=live, job=cleanup.JOB, status="running", started_at=utcnow()
            )
        )
    seen = run_ids()
    with pytest.raises(RunBusy):
        cleanup.run()
    assert runs_after(seen) == []


def test_purge_deletes_a_task_and_a_user_in_full_batches(cos: FakeCos) -> None:
    task_id = new_task("succeeded")
    for i in range(1200):
        cos.plant(f"{task_prefix(task_id)}{i:04d}.json", b"p")
    for i in range(300):
        cos.plant(upload_key("leaving", f"{i:04d}"), b"pp")
    cos.plant(upload_key("staying", "a"), b"s")
    cos.plant(f"{task_prefix(new_id())}out.json", b"s")

    counts = cleanup.purge([task_prefix(task_id), "uploads/leaving/"])

    assert (counts.deleted, counts.deleted_bytes, counts.failed) == (1500, 1800, 0)
    assert len(cos.keys()) == 2
    assert cos.count("DeleteObjects") == 2
    assert cleanup.purge_task(task_id).deleted == 0


@pytest.mark.parametrize("target", ["tasks/", "uploads/", "logs/", "tasks/x", "", "uploads//"])
def test_purge_refuses_what_is_not_ours(cos: FakeCos, target: str) -> None:
    with pytest.raises(ValueError, match="not a prefix or key of ours"):
        cleanup.purge([target])
    assert cos.count("DeleteObjects") == 0


def test_the_statuses_it_deletes_for_are_the_ended_unsuccessful_ones() -> None:
    assert set(cleanup.DEAD_TASK_STATUSES) == set(lifecycle.TERMINAL) - {"succeeded"}


def test_the_timer_and_the_admin_job_run_it(cos: FakeCos) -> None:
    cos.plant(f"{task_prefix(new_id())}out.json", b"t" * 9, last_modified=OLD)
    fired = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    event = {"Type": "Timer", "TriggerName": "cos-cleanup", "Time": fired, "Message": ""}
    report = handler("cos-cleanup")(event, {"function_name": "cos-cleanup"})
    # The timer's report has the fields the admin's answer has (README "Cleanup").
    assert report == {
        "job": "cos-cleanup",
        "scanned": 1,
        "deleted": 1,
        "deleted_bytes": 9,
        "failed": 0,
        "saved_cny_per_month": 0.0,  # 9 bytes
        "stopped_early": False,
    }
    assert run_job("cos-cleanup", an_actor()) == {
        "job": "cos-cleanup",
        "scanned": 0,
        "deleted": 0,
        "deleted_bytes": 0,
        "failed": 0,
        "saved_cny_per_month": 0.0,
        "stopped_early": False,
    }


def test_two_runs_started_at_once_never_delete_or_count_twice(cos: FakeCos) -> None:
    """The 03:00 timer and an admin's POST at the same moment: one runs, the other is
    refused as busy, and what was deleted is counted once."""
    task_id = new_id()  # no such task
    for i in range(1200):
        cos.plant(f"{task_prefix(task_id)}{i:05d}.json", b"z" * 4, last_modified=OLD)
    start = threading.Barrier(2)
    reports: list[dict[str, Any]] = []
    refused: list[BaseException] = []

    def one() -> None:
        start.wait()
        try:
            reports.append(cleanup.run())
        except RunBusy as error:
            refused.append(error)

    threads = [threading.Thread(target=one) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(r["deleted"] for r in reports) == 1200
    assert sum(r["deleted_bytes"] for r in reports) == 1200 * 4
    assert len(reports) + len(refused) == 2 and len(reports) >= 1
    assert cos.keys() == []


def _admin_run() -> Reply:
    return admin_job(cleanup.JOB, token_for(new_user(role="admin"), role="admin"))


def test_an_admin_asking_while_a_run_is_live_or_cos_fails_is_answered_503(cos: FakeCos) -> None:
    plant_live_run(cleanup.JOB)
    busy = _admin_run()
    assert (busy.status, busy.json()["code"]) == (503, "SERVICE_UNAVAILABLE"), busy.body
    assert "try again once it has ended" in busy.json()["message"]
    with transaction() as tx:
        tx.execute(delete(maintenance_runs).where(maintenance_runs.c.status == "running"))
    cos.plant(f"{task_prefix(new_id())}x.json", b"q", last_modified=OLD)
    cos.fail_next("DeleteObjects", 503, times=5)
    failed = _admin_run()
    assert (failed.status, failed.json()["code"]) == (503, "SERVICE_UNAVAILABLE"), failed.body


def test_an_admin_run_stopped_half_way_is_recorded_as_failed_with_what_it_did(
    cos: FakeCos,
) -> None:
    """The first batch was deleted before COS failed: the admin's run changed the bucket, so
    the trail has it, with the report its row has; a run refused as busy ran nothing and
    has no row."""
    for i in range(1500):
        cos.plant(f"{task_prefix(new_id())}{i}.json", b"q" * 2, last_modified=OLD)
    cos.fail_after("DeleteObjects", 1)
    admin = new_user(role="admin")
    with capture_logs() as logs:
        failed = admin_job(cleanup.JOB, token_for(admin, role="admin"))
    assert (failed.status, failed.json()["code"]) == (503, "SERVICE_UNAVAILABLE"), failed.body
    # A failed run an admin asked for is a `job failed` line, as a timer's is.
    (line,) = logs.where(message="job failed", job=cleanup.JOB)
    assert (line["trigger"], line["outcome"], line["level"]) == ("admin", "failed", "error")
    assert line["error"] == "SERVICE_UNAVAILABLE" and line["duration_ms"] >= 0
    assert len(cos.keys()) == 500
    (row,) = (
        r for r in actions_on(cleanup.JOB) if r["request_id"] == failed.header("X-Request-Id")
    )
    assert (row["actor_id"], row["action"]) == (admin, "job.run")
    assert row["changes"]["failed"] == "SERVICE_UNAVAILABLE"
    assert (row["changes"]["report"]["scanned"], row["changes"]["report"]["deleted"]) == (
        1500,
        1000,
    )

    plant_live_run(cleanup.JOB)
    busy = _admin_run()
    assert (busy.status, busy.json()["code"]) == (503, "SERVICE_UNAVAILABLE"), busy.body
    assert [
        r for r in actions_on(cleanup.JOB) if r["request_id"] == busy.header("X-Request-Id")
    ] == []


def test_a_failed_run_whose_record_cannot_be_written_is_answered_its_own_error(
    cos: FakeCos,
) -> None:
    """An actor id longer than its column fails the record (the database's own check): the
    admin still learns why the run stopped, and the lost record is logged."""
    cos.plant(f"{task_prefix(new_id())}x.json", b"q", last_modified=OLD)
    cos.fail_next("DeleteObjects", 503, times=5)
    with capture_logs() as logs, pytest.raises(CleanupInterrupted):
        run_job("cos-cleanup", an_actor("x" * 40))
    (line,) = logs.where(message="admin action not recorded")
    assert (line["job"], line["actor_id"], line["level"]) == ("cos-cleanup", "x" * 40, "error")
    assert line["error"] == "DataError"


def test_a_run_whose_bucket_cannot_be_built_leaves_no_row_to_refuse_the_next(
    cos: FakeCos,
) -> None:
    seen = run_ids()
    with settings_env(TENCENTCLOUD_SECRET_ID="", TENCENTCLOUD_SECRET_KEY=""):
        refused = _admin_run()
    assert (refused.status, refused.json()["code"]) == (503, "SERVICE_UNAVAILABLE"), refused.body
    assert runs_after(seen) == []
    assert _admin_run().status == 200  # configured again: the next run goes


def _plant_a_bucket_of_several_pages(cos: FakeCos) -> list[str]:
    """2800 keys under tasks/ (2500 orphans of 5 missing tasks, 300 of a succeeded one) and
    1501 under uploads/ (1500 orphans, 1 a task names): 3 and 2 listing pages. The keys
    that stay."""
    kept_task = new_task("succeeded")
    named = upload_key("u-named", "kept")
    new_task("succeeded", (named,))
    missing = [new_id() for _ in range(5)]
    for i in range(2500):
        cos.plant(f"{task_prefix(missing[i % 5])}{i:05d}.json", b"o", last_modified=OLD)
    kept = [f"{task_prefix(kept_task)}{i:05d}.json" for i in range(300)] + [named]
    for key in kept:
        cos.plant(key, b"k", last_modified=OLD)
    for i in range(1500):
        cos.plant(upload_key(f"user{i % 7}", f"{i:05d}"), b"u", last_modified=OLD)
    return kept


def _row(run_id: str) -> dict[str, Any]:
    (row,) = (r for r in runs_after(set()) if r["id"] == run_id)
    return row


def test_a_run_out_of_its_budget_stops_cleanly_and_the_next_goes_on_where_it_stopped(
    cos: FakeCos,
) -> None:
    """A bucket too large for one run: each run stops before the page it has no time for,
    sends what it queued and ends `ok`, `stopped_early`; the next lists after the last key
    it went through (under tasks/, then under uploads/), and the run that reaches the end
    leaves the one after it to start over."""
    kept = _plant_a_bucket_of_several_pages(cos)
    tasks_keys, uploads_keys = cos.keys("tasks/"), cos.keys("uploads/")

    def orphans_in(keys: list[str]) -> int:
        return sum(1 for key in keys if key not in kept)

    # Each slowed listing outlasts the budget: the run lists no page after it.
    budget_s, slow_s = 2.0, 2.5
    seen = run_ids()
    cos.slow_next("ListObjects", slow_s, after=1)  # the 2nd page of tasks/
    first = cleanup.run(budget_s=budget_s)
    assert first == {
        "scanned": 2000,
        "deleted": orphans_in(tasks_keys[:2000]),
        "deleted_bytes": orphans_in(tasks_keys[:2000]),
        "failed": 0,
        "saved_cny_per_month": saved(orphans_in(tasks_keys[:2000])),
        "stopped_early": True,
    }
    (row,) = runs_after(seen)
    assert (row["status"], row["error"], row["live_job"]) == ("ok", None, None)
    assert row["finished_at"] is not None and row["stopped_early"] is True
    assert row["resume_after"] == tasks_keys[1999]
    assert {k: row[k] for k in first} == first
    assert cos.keys("tasks/") == [k for k in tasks_keys[:2000] if k in kept] + tasks_keys[2000:]

    seen = run_ids()
    cos.slow_next("ListObjects", slow_s, after=1)  # its 2nd: the 1st page of uploads/
    second = cleanup.run(budget_s=budget_s)
    assert (second["scanned"], second["stopped_early"]) == (800 + 1000, True)
    assert second["deleted"] == orphans_in(tasks_keys[2000:]) + orphans_in(uploads_keys[:1000])
    (row,) = runs_after(seen)
    assert row["status"] == "ok" and row["resume_after"] == uploads_keys[999]

    seen = run_ids()
    lists = cos.count("ListObjects")
    third = cleanup.run(budget_s=budget_s)
    assert (third["scanned"], third["stopped_early"]) == (501, False)
    assert third["deleted"] == orphans_in(uploads_keys[1000:]) and third["failed"] == 0
    assert cos.count("ListObjects") - lists == 1  # tasks/ is not listed again
    (row,) = runs_after(seen)
    assert (row["status"], row["stopped_early"], row["resume_after"]) == ("ok", False, None)
    assert sorted(cos.keys()) == sorted(kept)
    assert first["deleted"] + second["deleted"] + third["deleted"] == 2500 + 1500

    fourth = cleanup.run()  # from the start again: only what stays is listed
    assert (fourth["scanned"], fourth["deleted"], fourth["stopped_early"]) == (301, 0, False)


def test_a_run_is_bounded_by_the_end_of_the_invocation_it_runs_in(cos: FakeCos) -> None:
    """An invocation that ends sooner than RUN_BUDGET_S and AFTER_LAST_CHECK_S allow leaves
    the run less: here 2 s, so it stops at the slowed second page as with `budget_s=2`."""
    _plant_a_bucket_of_several_pages(cos)
    cos.slow_next("ListObjects", 2.5, after=1)
    ends_at = time.monotonic() + cleanup.AFTER_LAST_CHECK_S + 2.0
    with invocation_ending(ends_at):
        report = cleanup.run()
    assert (report["scanned"], report["stopped_early"]) == (2000, True)


def saved(deleted_bytes: int) -> float:
    return round(deleted_bytes / 2**30 * 0.118, 6)


def test_a_run_that_dies_or_fails_leaves_the_next_where_it_started(cos: FakeCos) -> None:
    """Killed at its timeout (its row closed as dead by the next run) or stopped by COS, a
    run may have queued deletes past where it started that never went: the next run goes
    on from where the failed one started, not from where it had got to."""
    with transaction() as tx:  # the dead run is the job's last, as it is once no run is live
        tx.execute(delete(maintenance_runs).where(maintenance_runs.c.job == cleanup.JOB))
    _plant_a_bucket_of_several_pages(cos)
    tasks_keys = cos.keys("tasks/")
    dead = plant_live_run(cleanup.JOB, started_at=utcnow() - timedelta(seconds=STALE_RUN_S + 60))
    with transaction() as tx:
        tx.execute(
            update(maintenance_runs)
            .where(maintenance_runs.c.id == dead)
            .values(resume_after=tasks_keys[1499])
        )
    seen = run_ids()
    cos.fail_next("ListObjects", 503, times=2)  # the first page and its retry

    with pytest.raises(CleanupInterrupted):
        cleanup.run()
    assert _row(dead)["status"] == "failed"
    (failed,) = runs_after(seen)
    assert failed["status"] == "failed" and failed["resume_after"] == tasks_keys[1499]

    report = cleanup.run()
    assert report["scanned"] == 1300 + 1501 and report["stopped_early"] is False
    assert cos.keys("tasks/")[:1500] == tasks_keys[:1500]  # before where it went on: untouched


@pytest.mark.parametrize("function", ["cos-cleanup", "admin-jobs-run"])
def test_a_run_ends_within_the_timeout_of_each_function_that_runs_it(function: str) -> None:
    timeout_s = manifest.load().functions[function].timeout_s
    assert timeout_s >= cleanup.RUN_BUDGET_S + cleanup.AFTER_LAST_CHECK_S
