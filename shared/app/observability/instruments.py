"""Counters, gauges and histograms that cost nothing to load.

Every invocation records into these, so they sit on every function's cold start: they are
plain numbers under a lock, and prometheus_client, which takes about a tenth of a minimal
FastAPI app's whole import to load, is imported only where the numbers leave the process
(`app.observability.exposition`: `/metrics` and the push). The names and label sets are
Prometheus's; the types follow prometheus_client's API (`.labels(...).inc()`, `.observe()`,
`.set()`), so the exposition is the library's own text format.

A counter also tells the invocation that moved it: while an adapter holds a `Tally` open
around an invocation, every increment made in that invocation's context is added to the
tally too, under the field its log line gives it, so each invocation's line says what it
did without any service passing numbers around.
"""

from __future__ import annotations

import bisect
import contextvars
import re
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

DEFAULT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
S = TypeVar("S")
# Every instrument of the process, in the order made: what the exposition walks.
INSTRUMENTS: list[_Instrument[Any]] = []
# In a log field's name a label value keeps letters, digits, `_` and `-`; anything else becomes
# `_` (CLS field names refuse `*\",`, and dots separate the parts).
_UNSAFE_IN_FIELD = re.compile(r"[^A-Za-z0-9_-]")


class _Instrument(Generic[S]):
    kind = ""

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str] = ()) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = tuple(labelnames)
        self._lock = threading.Lock()
        self._series: dict[tuple[str, ...], S] = {}
        INSTRUMENTS.append(self)

    def _new(self, values: tuple[str, ...]) -> S:
        raise NotImplementedError

    def _child(self, values: tuple[str, ...]) -> S:
        found = self._series.get(values)
        if found is None:
            with self._lock:
                found = self._series.get(values)
                if found is None:
                    found = self._series[values] = self._new(values)
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


class Tally:
    """The counters one invocation moved, and by how much: what its log line reports.

    `with Tally() as tally:` around the invocation; while it is open, each counter increment
    made in this context (the invocation's thread, or code run in a copy of its context) is
    added here too. `fields()` gives one entry per series moved, named
    `metrics.<metric>[.<label value>...]` (label values in the metric's label order), because
    SCF turns only the first level of a JSON log line into CLS fields. Gauges and histograms
    are not tallied: they hold state and durations, which the line states itself.
    """

    __slots__ = ("_amounts", "_lock", "_token")

    def __init__(self) -> None:
        self._amounts: dict[str, float] = {}
        self._lock = threading.Lock()
        self._token: contextvars.Token[Tally | None] | None = None

    def __enter__(self) -> Tally:
        self._token = _TALLY.set(self)
        return self

    def __exit__(self, *_exc: object) -> None:
        if self._token is not None:
            _TALLY.reset(self._token)
            self._token = None

    def add(self, field_name: str, amount: float) -> None:
        # A lock, not bare dict arithmetic: a copied context may share the tally across
        # threads, and `get` then `set` is not atomic.
        with self._lock:
            self._amounts[field_name] = self._amounts.get(field_name, 0.0) + amount

    def fields(self) -> dict[str, float]:
        """Each series moved, by its field name; whole numbers as integers."""
        with self._lock:
            moved = list(self._amounts.items())
        return {name: int(amount) if amount.is_integer() else amount for name, amount in moved}


# The tally of the invocation running in this context, if an adapter opened one.
_TALLY: contextvars.ContextVar[Tally | None] = contextvars.ContextVar("tally", default=None)


def field_name(metric: str, values: Sequence[str]) -> str:
    """The log field a series is tallied under: `metrics.quota_saga_total.reserve.reserved`."""
    return ".".join(("metrics", metric, *(_UNSAFE_IN_FIELD.sub("_", v) or "_" for v in values)))


class _Count(_Number):
    """One counter series: counts for the process, and for the invocation's tally."""

    __slots__ = ("field_name",)

    def __init__(self, name: str) -> None:
        super().__init__()
        self.field_name = name

    def inc(self, amount: float = 1.0) -> None:
        if amount < 0:
            raise ValueError("a counter only goes up")
        with self._lock:
            self.value += amount
        tally = _TALLY.get()
        if tally is not None:
            tally.add(self.field_name, amount)


class Counter(_Instrument[_Count]):
    """Only goes up. `name` ends in `_total`, as exposed."""

    kind = "counter"

    def _new(self, values: tuple[str, ...]) -> _Count:
        return _Count(field_name(self.name, values))

    def inc(self, amount: float = 1.0) -> None:
        self._child(()).inc(amount)

    def value(self, **labels: object) -> float:
        return self._child(self._values((), labels) if labels else ()).value


class Gauge(_Instrument[_Number]):
    kind = "gauge"

    def _new(self, values: tuple[str, ...]) -> _Number:
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

    def _new(self, values: tuple[str, ...]) -> Distribution:
        return Distribution(self.bounds)
