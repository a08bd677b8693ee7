"""The push to a Pushgateway, against a fake one over real HTTP: after an invocation once an
interval has passed (the first at once), under a grouping key naming the function and the
instance, with the instance's counters in the body; never failing or holding up an
invocation; and nothing at all while METRICS_PUSHGATEWAY_URL is unset."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from app.events import queue, timer
from app.http import Auth, Request, Router, http_handler
from app.observability import push
from app.observability.instruments import Counter, Gauge, Histogram
from tests.fakes.pushgateway import FakePushgateway
from tests.support.function_url import context, event
from tests.support.functions import fresh_instance, in_fresh_instance
from tests.support.logs import capture_logs
from tests.support.net import closed_port
from tests.support.settings import settings_env

PUSHED = Counter("probe_pushed_total", "Probe pushes.", ["outcome"])
router = Router(tags=("test",))


@router.get("/push-probe", auth=Auth.PUBLIC)
def probe(req: Request[None, None]) -> dict[str, Any]:
    PUSHED.labels("ok").inc()
    return {"ok": True}


@contextmanager
def pushing_to(url: str, interval_s: str = "3600", timeout_s: str = "5") -> Iterator[Any]:
    """An HTTP function built under these push settings (each test its own schedule)."""
    with settings_env(
        METRICS_PUSHGATEWAY_URL=url,
        METRICS_PUSH_INTERVAL_S=interval_s,
        METRICS_PUSH_TIMEOUT_S=timeout_s,
    ):
        yield http_handler(probe)


def invoke(handler: Any, function: str) -> int:
    return int(handler(event("GET", "/push-probe"), context(function))["statusCode"])


def test_the_first_invocation_pushes_its_counters_under_the_function_and_instance() -> None:
    with FakePushgateway() as gateway, pushing_to(gateway.url) as handler:
        assert invoke(handler, "push-probe") == 200
        assert invoke(handler, "push-probe") == 200  # the interval has not passed

    (pushed,) = gateway.pushes
    assert pushed.method == "PUT"
    assert pushed.path == f"/metrics/job/ai-platform/function/push-probe/instance/{push.INSTANCE}"
    assert pushed.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert "Authorization" not in pushed.headers
    assert pushed.sample("probe_pushed_total", outcome="ok") == PUSHED.value(outcome="ok") - 1
    assert (
        pushed.sample(
            "http_requests_total",
            function="push-probe",
            method="GET",
            route="/push-probe",
            status="200",
        )
        == 1
    )
    assert pushed.sample("http_request_duration_seconds_count", function="push-probe") == 1
    # The instruments only: the process collectors stay on /metrics.
    assert pushed.sample("process_cpu_seconds_total") is None


def test_a_push_is_due_again_once_the_interval_has_passed_and_not_before() -> None:
    now = [100.0]
    with FakePushgateway() as gateway:
        pusher = push.Pusher(gateway.url, interval_s=10, timeout_s=5, clock=lambda: now[0])
        pusher.after_invocation("tick")
        PUSHED.labels("tick").inc()
        now[0] = 109.9
        pusher.after_invocation("tick")
        assert len(gateway.pushes) == 1
        now[0] = 110.0
        pusher.after_invocation("tick")
        assert len(gateway.pushes) == 2
    first, second = gateway.pushes
    assert first.sample("probe_pushed_total", outcome="tick") is None
    assert second.sample("probe_pushed_total", outcome="tick") == 1


def test_a_failing_pushgateway_fails_nothing_and_is_logged_once_per_interval() -> None:
    with FakePushgateway(status=500) as gateway:
        port = gateway.port
        url = f"http://ops:s3cret-token@127.0.0.1:{port}/prefix"
        with pushing_to(url) as handler, capture_logs() as logs:
            assert [invoke(handler, "push-failing") for _ in range(3)] == [200, 200, 200]
    (warning,) = logs.where(message="metrics push failed")
    assert warning["level"] == "warning"
    assert warning["gateway"] == f"127.0.0.1:{port}"
    assert warning["function"] == "push-failing" and warning["instance"] == push.INSTANCE
    assert "500" in warning["error"]
    assert "s3cret" not in logs.text
    # Basic auth from the URL's credentials, the path prefix kept.
    (pushed,) = gateway.pushes
    assert pushed.path.startswith("/prefix/metrics/job/ai-platform/")
    assert (
        pushed.headers["Authorization"] == "Basic " + base64.b64encode(b"ops:s3cret-token").decode()
    )


def test_an_unreachable_pushgateway_fails_nothing() -> None:
    with pushing_to(f"http://127.0.0.1:{closed_port()}") as handler, capture_logs() as logs:
        assert invoke(handler, "push-refused") == 200
    (warning,) = logs.where(message="metrics push failed")
    assert "Connection refused" in warning["error"] or "URLError" in warning["error"]


def test_a_slow_pushgateway_does_not_hold_the_answer() -> None:
    """The Pushgateway answers nothing until released; the invocation answers before that,
    having waited for the push only METRICS_PUSH_TIMEOUT_S."""
    answers: list[int] = []
    with FakePushgateway() as gateway, pushing_to(gateway.url, timeout_s="0.2") as handler:
        gateway.hold()
        started = time.monotonic()
        caller = threading.Thread(target=lambda: answers.append(invoke(handler, "push-slow")))
        caller.start()
        caller.join(20)  # generous: the gateway would hold the push for 30 s
        took = time.monotonic() - started
        assert not caller.is_alive(), "the invocation waited for the Pushgateway"
        assert answers == [200]
        assert took < 10
        assert gateway.arrived.wait(10)  # the push was under way...
        assert gateway.pushes[0].method == "PUT"  # ...and still unanswered when it returned
        gateway.release()


def test_no_second_push_starts_while_one_is_under_way() -> None:
    now = [0.0]
    with FakePushgateway() as gateway:
        pusher = push.Pusher(gateway.url, interval_s=20, timeout_s=0.05, clock=lambda: now[0])
        gateway.hold()
        pusher.after_invocation("busy")
        assert gateway.arrived.wait(10)
        now[0] = 60.0
        pusher.after_invocation("busy")  # due, but the first push still waits for its answer
        assert pusher.pushing and len(gateway.pushes) == 1
        gateway.release()
        deadline = time.monotonic() + 10
        while pusher.pushing and time.monotonic() < deadline:
            time.sleep(0.01)
        pusher.after_invocation("busy")
        # the invocation waits 50 ms at most: on a loaded machine the push lands later
        deadline = time.monotonic() + 10
        while pusher.pushing and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(gateway.pushes) == 2


def test_timer_runs_and_asynchronous_invocations_push_too_even_when_they_raise() -> None:
    def broken(_event: timer.TimerEvent) -> dict[str, Any]:
        raise RuntimeError("boom")

    def consume(_message: dict[str, Any]) -> None:
        raise ValueError("again")

    message = {"kind": "step"}
    with FakePushgateway() as timers, FakePushgateway() as queues:
        with pushing_to(timers.url), pytest.raises(RuntimeError):
            timer.timer_handler(broken)({"Type": "Timer"}, context("push-timer"))
        with pushing_to(queues.url), pytest.raises(ValueError):
            queue.queue_handler(consume)(message, context("push-queue"))
    assert [p.path.split("/")[5] for p in timers.pushes + queues.pushes] == [
        "push-timer",
        "push-queue",
    ]


# In a fresh interpreter, as an SCF instance: load a function, invoke it once, then say
# whether prometheus_client was ever imported and whether a push thread ran.
CHILD = """
import json, sys, threading
import index
answer = index.main_handler(
    {"httpMethod": "GET", "path": "/openapi.json", "headers": {}, "queryString": {}},
    {"function_name": "openapi", "request_id": "r-1"},
)
print(json.dumps({
    "status": answer["statusCode"],
    "prometheus_client": "prometheus_client" in sys.modules,
    "push_thread": any(t.name == "metrics-push" for t in threading.enumerate()),
}))
"""


def run_function(**env: str) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(in_fresh_instance("openapi", CHILD, env=env))
    return result


def test_nothing_is_pushed_or_loaded_while_the_variable_is_unset() -> None:
    with FakePushgateway() as gateway:
        unset = run_function()
        pushed = run_function(METRICS_PUSHGATEWAY_URL=gateway.url)
    assert unset == {"status": 200, "prometheus_client": False, "push_thread": False}
    assert pushed["status"] == 200 and pushed["prometheus_client"] is True
    (only,) = gateway.pushes
    assert only.path.startswith("/metrics/job/ai-platform/function/openapi/instance/")


# A fresh admin-jobs-run instance runs two jobs, as two admins' requests would, and pushes.
TWO_JOBS = """
import sys
from app.events.timer import run_counted
from app.observability import push
for job in ("saga-sweeper", "cos-cleanup"):
    run_counted(job, lambda: {}, {})
push.Pusher(sys.argv[1], interval_s=3600, timeout_s=10).after_invocation("admin-jobs-run")
print("pushed")
"""


def test_an_instance_that_ran_two_jobs_pushes_each_jobs_runs_apart() -> None:
    """The Pushgateway sets its grouping key's `job` ("ai-platform") over any `job` label a
    series carries: a job's own label must be named otherwise, or the instance that ran two
    jobs pushes two series the gateway makes one (refused, 400: none of that instance's
    numbers arrive again) and every run reads as job "ai-platform"."""
    with FakePushgateway(consistency_check=True) as gateway:
        child = fresh_instance("admin-jobs-run", TWO_JOBS, gateway.url)
    assert "metrics push failed" not in child.stdout
    (pushed,) = gateway.pushes
    assert pushed.duplicates == []
    runs = {
        labels["job_name"]: value
        for name, labels, value in pushed.stored
        if name == "job_runs_total" and labels["outcome"] == "ok"
    }
    assert runs == {"saga-sweeper": 1, "cos-cleanup": 1}
    assert {labels["job"] for _, labels, _ in pushed.stored} == {"ai-platform"}


def test_no_instrument_carries_a_label_the_push_sets() -> None:
    """Every label of the grouping key (`job`, `function`, `instance`) is set by the
    Pushgateway over a series' own; only the HTTP series carry `function`, the same value
    there on SCF (an instance serves one function)."""
    from app.observability import metrics  # the declared instruments, not the test's probes

    for instrument in vars(metrics).values():
        if isinstance(instrument, (Counter, Gauge, Histogram)):
            allowed = {"function"} if instrument.name.startswith("http_") else set()
            clash = {"job", "function", "instance"} & set(instrument.labelnames) - allowed
            assert not clash, f"{instrument.name} has {sorted(clash)}"
