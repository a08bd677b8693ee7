"""The instruments in Prometheus's text format, through prometheus_client: imported only by
what sends metrics out of the process (`GET /metrics`, the push), never on an invocation's
way in.

The instruments (`app.observability.instruments`) are collected by a prometheus_client
collector registered on the library's default registry, beside its own process and
platform collectors, so `generate_latest()` renders everything this process knows. A push
sends the instruments only, from a registry of their own: the process collectors describe
one short-lived SCF instance and would only add series to the Pushgateway.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from urllib.parse import unquote, urlsplit, urlunsplit

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    generate_latest,
    push_to_gateway,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import basic_auth_handler, default_handler
from prometheus_client.registry import Collector

from app.observability.instruments import INSTRUMENTS, Counter, Distribution, Gauge, Histogram

CONTENT_TYPE = CONTENT_TYPE_LATEST


class InstrumentsCollector(Collector):
    def collect(self) -> Iterator[Metric]:
        for instrument in list(INSTRUMENTS):
            labelnames = list(instrument.labelnames)
            family: Metric
            if isinstance(instrument, Counter):
                family = CounterMetricFamily(
                    instrument.name.removesuffix("_total"),
                    instrument.documentation,
                    labels=labelnames,
                )
                for labels, number in instrument.series():
                    family.add_metric(list(labels.values()), number.value)
            elif isinstance(instrument, Gauge):
                family = GaugeMetricFamily(
                    instrument.name, instrument.documentation, labels=labelnames
                )
                for labels, level in instrument.series():
                    family.add_metric(list(labels.values()), level.value)
            elif isinstance(instrument, Histogram):
                family = HistogramMetricFamily(
                    instrument.name, instrument.documentation, labels=labelnames
                )
                for labels, dist in instrument.series():
                    family.add_metric(list(labels.values()), _buckets(dist), dist.total)
            else:  # pragma: no cover - every instrument type is listed above
                continue
            yield family


def _buckets(dist: Distribution) -> list[tuple[str, float]]:
    with dist.lock:
        counts = list(dist.counts)
    cumulated, running = [], 0
    for bound, count in zip((*dist.bounds, float("inf")), counts, strict=True):
        running += count
        cumulated.append((_bound(bound), float(running)))
    return cumulated


def _bound(value: float) -> str:
    return "+Inf" if value == float("inf") else repr(float(value))


_registered = False
_lock = threading.Lock()
_PUSHED = CollectorRegistry()
_PUSHED.register(InstrumentsCollector())


def latest() -> bytes:
    """Everything this process knows, in the text format."""
    global _registered
    with _lock:
        if not _registered:
            REGISTRY.register(InstrumentsCollector())
            _registered = True
    return generate_latest(REGISTRY)


def push(url: str, job: str, grouping_key: Mapping[str, str], timeout_s: float) -> None:
    """PUT the instruments to the Pushgateway at `url` (any path prefix kept), replacing the
    group `job` + `grouping_key`. `url` may carry `user:password@` for basic auth (Tencent
    Managed Prometheus: the APPID and a token). Raises what the request raises, or OSError
    for an answer of 400 and above; `timeout_s` bounds each socket operation."""
    parts = urlsplit(url)
    handler: Callable[..., Callable[[], None]] = default_handler
    if parts.username is not None:
        username, password = unquote(parts.username), unquote(parts.password or "")
        url = urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))

        def handler(
            url: str,
            method: str,
            timeout: float | None,
            headers: list[tuple[str, str]],
            data: bytes,
        ) -> Callable[[], None]:
            return basic_auth_handler(url, method, timeout, headers, data, username, password)

    push_to_gateway(
        url,
        job=job,
        registry=_PUSHED,
        grouping_key=dict(grouping_key),
        timeout=timeout_s,
        handler=handler,
    )
