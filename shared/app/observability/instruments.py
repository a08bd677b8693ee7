"""Counters, gauges and histograms that cost nothing to load.

Every invocation records into these, so they sit on every function's cold start: they are
plain numbers under a lock, and prometheus_client, which takes about a tenth of a minimal
FastAPI app's whole import to load, is imported only where the numbers leave the process
(`app.observability.exposition`: `/metrics` and the push). The names and label sets are
Prometheus's; the types follow prometheus_client's API (`.labels(...).inc()`, `.observe()`,
`.set()`), so the exposition is the library's own text format.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

DEFAULT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
S = TypeVar("S")
# Every instrument of the process, in the order made: what the exposition walks.
INSTRUMENTS: list[_Instrument[Any]] = []


class _Instrument(Generic[S]):
    kind = ""

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str] = ()) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = tuple(labelnames)
        self._lock = threading.Lock()
        self._series: dict[tuple[str, ...], S] = {}
        INSTRUMENTS.append(self)

    def _new(self) -> S:
        raise NotImplementedError

    def _child(self, values: tuple[str, ...]) -> S:
        found = self._series.get(values)
        if found is None:
            with self._lock:
                found = self._series.setdefault(values, self._new())
        return found

    def _values(self, args: tuple[object, ...], kwargs: dict[str, object]) -> tuple[str, ...]:
        if kwargs:
            if args or set(kwargs) != set(self.labelnames):
                raise ValueError(f"{self.name} takes the labels {self.labelnames}")
            return tuple(str(kwargs[name]) for name in self.labelnames)
        if len(args) != len(self.labelnames):
            raise ValueError(f"{self.name} takes the labels {self.labelnames}")
        return tuple(str(value) for value in args)

    def labels(self, *args: object, **kwargs: object) -> S:
        return self._child(self._values(args, kwargs))

    def series(self) -> Iterator[tuple[dict[str, str], S]]:
        """Each label set recorded so far, with its numbers."""
        with self._lock:
            items = list(self._series.items())
        for values, child in items:
            yield dict(zip(self.labelnames, values, strict=True)), child


class _Number:
    __slots__ = ("_lock", "value")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.value = 0.0

    def inc(self, amount: float = 1.0) -> None:
        with self._lock:
            self.value += amount

    def set(self, value: float) -> None:
        with self._lock:
            self.value = float(value)


class Counter(_Instrument[_Number]):
    """Only goes up. `name` ends in `_total`, as exposed."""

    kind = "counter"

    def _new(self) -> _Number:
        return _Number()

    def inc(self, amount: float = 1.0) -> None:
        if amount < 0:
            raise ValueError("a counter only goes up")
        self._child(()).inc(amount)

    def value(self, **labels: object) -> float:
        return self._child(self._values((), labels) if labels else ()).value


class Gauge(_Instrument[_Number]):
    kind = "gauge"

    def _new(self) -> _Number:
        return _Number()

    def set(self, value: float) -> None:
        self._child(()).set(value)

    def value(self, **labels: object) -> float:
        return self._child(self._values((), labels) if labels else ()).value


@dataclass
class Distribution:
    """One histogram series: counts per upper bound (cumulated when exposed), sum, count."""

    bounds: tuple[float, ...]
    counts: list[int] = field(default_factory=list)
    total: float = 0.0
    count: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        self.counts = [0] * (len(self.bounds) + 1)  # the last one is +Inf

    def observe(self, value: float) -> None:
        index = bisect.bisect_left(self.bounds, value)
        with self.lock:
            self.counts[index] += 1
            self.total += value
            self.count += 1


class Histogram(_Instrument[Distribution]):
    kind = "histogram"

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str] = (),
        buckets: Sequence[float] = DEFAULT_BUCKETS,
    ) -> None:
        self.bounds = tuple(sorted(buckets))
        super().__init__(name, documentation, labelnames)

    def _new(self) -> Distribution:
        return Distribution(self.bounds)
