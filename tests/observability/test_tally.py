"""What an invocation's log line says it moved: the counters incremented while its tally was
open, each under its own top-level field, and nothing of any other invocation's."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from app.events import queue, timer
from app.http import Auth, Request, Router, http_handler
from app.observability.instruments import Counter, Gauge, Histogram, Tally
from tests.support.function_url import context, event
from tests.support.logs import capture_logs

SAGA = Counter("probe_saga_total", "Probe saga calls.", ["verb", "outcome"])
DELETED = Counter("probe_deleted_total", "Probe deletions.")
DEPTH = Gauge("probe_tally_depth", "Probe depth.")
SECONDS = Histogram("probe_tally_seconds", "Probe seconds.")

router = Router(tags=("test",))


@router.get("/tally/{times}", auth=Auth.PUBLIC)
def move(req: Request[None, None]) -> dict[str, Any]:
    times = int(req.path_params["times"])
    for _ in range(times):
        SAGA.labels(verb="reserve", outcome="reserved").inc()
    DELETED.inc(2.5)
    return {"moved": times}


def test_increments_inside_a_tally_are_its_fields_and_only_counters_are_tallied() -> None:
    before = SAGA.value(verb="reserve", outcome="reserved")
    with Tally() as tally:
        SAGA.labels("reserve", "reserved").inc()
        SAGA.labels(verb="reserve", outcome="reserved").inc(2)
        SAGA.labels("cancel", "cancelled").inc()
        DELETED.inc(0.5)
        DEPTH.set(3)
        SECONDS.labels().observe(0.2)
    SAGA.labels("reserve", "reserved").inc()  # after the tally closed: the process only
    assert tally.fields() == {
        "metrics.probe_saga_total.reserve.reserved": 3,
        "metrics.probe_saga_total.cancel.cancelled": 1,
        "metrics.probe_deleted_total": 0.5,
    }
    assert SAGA.value(verb="reserve", outcome="reserved") == before + 4


def test_label_values_keep_only_characters_a_cls_field_name_takes() -> None:
    odd = Counter("probe_odd_total", "Odd labels.", ["value"])
    with Tally() as tally:
        odd.labels('a.b/c,"d"*').inc()
        odd.labels("").inc()
        odd.labels("saga-sweeper").inc()
    assert tally.fields() == {
        "metrics.probe_odd_total.a_b_c__d__": 1,
        "metrics.probe_odd_total._": 1,
        "metrics.probe_odd_total.saga-sweeper": 1,
    }


def test_a_nested_tally_takes_its_own_increments_and_gives_the_outer_one_back() -> None:
    with Tally() as outer:
        DELETED.inc()
        with Tally() as inner:
            DELETED.inc()
        DELETED.inc()
    assert inner.fields() == {"metrics.probe_deleted_total": 1}
    assert outer.fields() == {"metrics.probe_deleted_total": 2}


def test_the_log_line_of_each_concurrent_invocation_carries_only_its_own_counters() -> None:
    handler = http_handler(move)
    start = threading.Barrier(8)

    def invoke(times: int) -> None:
        request = event("GET", f"/tally/{times}")
        start.wait()
        handler(request, context("tally-probe", request_id=f"r{times}"))

    with capture_logs() as logs:
        threads = [threading.Thread(target=invoke, args=(n,)) for n in range(1, 9)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    lines = {line["request_id"]: line for line in logs.where(message="invocation")}
    for times in range(1, 9):
        line = lines[f"r{times}"]
        assert line["status"] == 200
        assert line["metrics.probe_saga_total.reserve.reserved"] == times
        assert line["metrics.probe_deleted_total"] == 2.5
        # The adapter's own RED numbers are the line's own fields, not tallied.
        assert not any(key.startswith("metrics.http_") for key in line)


def test_a_timer_run_line_carries_what_the_job_moved_raised_or_not() -> None:
    def sweep(_event: timer.TimerEvent) -> dict[str, Any]:
        SAGA.labels("confirm", "confirmed").inc(4)
        return {"settled": 4}

    def broken(_event: timer.TimerEvent) -> dict[str, Any]:
        SAGA.labels("cancel", "cancelled").inc()
        raise RuntimeError("boom")

    fired = {"Type": "Timer", "TriggerName": "t", "Time": "2026-11-29T03:00:00Z"}
    with capture_logs() as logs:
        timer.timer_handler(sweep, name="tally-sweep")(fired, context("tally-timer"))
        with pytest.raises(RuntimeError):
            timer.timer_handler(broken, name="tally-broken")(fired, context("tally-timer"))
    (ran,) = logs.where(message="job run", job="tally-sweep")
    assert ran["metrics.probe_saga_total.confirm.confirmed"] == 4
    assert not any(key.startswith("metrics.job_runs_total") for key in ran)
    (failed,) = logs.where(message="job failed", job="tally-broken")
    assert failed["metrics.probe_saga_total.cancel.cancelled"] == 1


def test_each_queue_message_line_carries_what_its_consumer_moved() -> None:
    def consume(message: dict[str, Any]) -> None:
        DELETED.inc(message["n"])

    handler = queue.queue_handler(consume)
    with capture_logs() as logs:
        for n in (1, 2):
            handler({"n": n}, context("tally-queue"))
    assert [
        line["metrics.probe_deleted_total"] for line in logs.where(message="queue message")
    ] == [1, 2]
