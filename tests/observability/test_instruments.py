"""The instruments every invocation records into, and their exposition: the numbers and
labels recorded are what `/metrics` shows, in prometheus_client's own text format."""

from __future__ import annotations

import threading

import pytest

from app.observability import exposition
from app.observability.instruments import Counter, Gauge, Histogram


def test_counters_gauges_and_histograms_are_exposed_with_their_labels() -> None:
    calls = Counter("probe_calls_total", "Probe calls.", ["outcome"])
    depth = Gauge("probe_depth", "Probe depth.")
    latency = Histogram("probe_seconds", "Probe latency.", ["route"], buckets=(0.1, 1.0))
    calls.labels("ok").inc()
    calls.labels(outcome="ok").inc(2)
    calls.labels("failed").inc()
    depth.set(7)
    for seconds in (0.05, 0.5, 5.0):
        latency.labels(route="/x").observe(seconds)

    text = exposition.latest().decode()
    assert 'probe_calls_total{outcome="ok"} 3.0' in text
    assert 'probe_calls_total{outcome="failed"} 1.0' in text
    assert "# TYPE probe_calls_total counter" in text or "# TYPE probe_calls counter" in text
    assert "probe_depth 7.0" in text
    assert 'probe_seconds_bucket{le="0.1",route="/x"} 1.0' in text
    assert 'probe_seconds_bucket{le="1.0",route="/x"} 2.0' in text
    assert 'probe_seconds_bucket{le="+Inf",route="/x"} 3.0' in text
    assert 'probe_seconds_count{route="/x"} 3.0' in text
    assert 'probe_seconds_sum{route="/x"} 5.55' in text
    assert calls.value(outcome="ok") == 3 and depth.value() == 7


def test_wrong_labels_and_a_falling_counter_are_refused() -> None:
    jobs = Counter("probe_jobs_total", "Probe jobs.", ["job", "outcome"])
    with pytest.raises(ValueError):
        jobs.labels("only-one")
    with pytest.raises(ValueError):
        jobs.labels(job="a", result="ok")
    with pytest.raises(ValueError):
        Counter("probe_plain_total", "Plain.").inc(-1)


def test_concurrent_increments_are_all_counted() -> None:
    hits = Counter("probe_hits_total", "Probe hits.", ["who"])

    def hammer() -> None:
        for _ in range(10_000):
            hits.labels("t").inc()

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert hits.value(who="t") == 80_000
