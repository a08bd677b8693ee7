"""Pushing this instance's instruments to a Pushgateway (Tencent Managed Prometheus has one
built in), so every SCF instance's numbers reach Prometheus, not only the one `/metrics`
happens to reach.

When: inside an invocation, after its answer is built and its log line written, at most
once every `METRICS_PUSH_INTERVAL_S` per instance; an instance's first invocation pushes at
once, so its series start close to zero (`rate()` cannot count what a series held when it
first appeared). Not from a timer thread: SCF freezes an instance between invocations,
background threads included, and reclaims it without notice, so a thread would mostly sit
frozen and the last push would never come. The price is that the invocation a push falls
on answers a little later, bounded as follows.

How long: the push runs on a thread of its own and the invocation waits for it at most
`METRICS_PUSH_TIMEOUT_S`, then answers anyway. A push still running then goes on in the
background (frozen with the instance, if it comes to that) until its socket has waited an
interval without progress; no other push starts before it has ended, so an older body
never overwrites a newer one and a slow Pushgateway still gets every push it can take. An
instance's first push also imports prometheus_client (about 35 ms here), inside that wait.

Failures: a push that fails is logged as one warning line and never raised, so no answer
depends on the Pushgateway; pushes are at most one per interval, and so are the warnings.

What and where: a PUT (replace) of every instrument (`app.observability.exposition.push`)
to the group `job="ai-platform"`, `function`, `instance`. `instance` is random per process,
so concurrent instances of one function never overwrite each other's group. The
Pushgateway sets the grouping labels on every series of the group; on SCF an instance
serves one function, so `function` only repeats what the HTTP series already say (the local
cloud, which runs every function in one process, would push them all under the first
function it served: push from SCF, not from `make run`). Nothing deletes a group: an
instance is reclaimed without an event to delete on, and its group keeps its last numbers;
query them with `rate()` / `increase()` (README, "Observability").

prometheus_client is imported on the push thread when the first push is due: no function's
load pays for it, and nothing at all does while METRICS_PUSHGATEWAY_URL is unset.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable
from urllib.parse import urlsplit

from app.observability import logging as applog

log = applog.get_logger("app.observability.push")
JOB = "ai-platform"
# This process, for as long as it lives: the grouping key's `instance`.
INSTANCE = secrets.token_hex(6)


class Pusher:
    """The push schedule of one process for one Pushgateway URL (empty: never push)."""

    def __init__(
        self,
        url: str,
        interval_s: float,
        timeout_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        self.clock = clock
        self._lock = threading.Lock()
        self._due = float("-inf")
        self._running: threading.Thread | None = None
        self._function: str | None = None

    @property
    def grouping_key(self) -> dict[str, str]:
        return {"function": self._function or "", "instance": INSTANCE}

    @property
    def pushing(self) -> bool:
        """A push is under way (on its thread)."""
        running = self._running
        return running is not None and running.is_alive()

    def after_invocation(self, function: str) -> None:
        """Push if one is due and none is running; wait for it at most `timeout_s`."""
        if not self.url:
            return
        with self._lock:
            if self._function is None:
                self._function = function
            now = self.clock()
            if now < self._due or self.pushing:
                return
            self._due = now + self.interval_s
            self._running = threading.Thread(target=self._push, name="metrics-push", daemon=True)
            running = self._running
        running.start()
        running.join(self.timeout_s)

    def _push(self) -> None:
        started = time.perf_counter()
        try:
            from app.observability import exposition  # cold start: prometheus_client, at a push

            exposition.push(self.url, JOB, self.grouping_key, self.interval_s)
        except Exception as exc:  # noqa: BLE001 - a push never fails anything: it is logged
            parts = urlsplit(self.url)
            applog.log_fields(
                log,
                logging.WARNING,
                "metrics push failed",
                # host and port only: the URL may carry credentials
                gateway=parts.netloc.rpartition("@")[2],
                error=f"{type(exc).__name__}: {exc}",
                duration_ms=round((time.perf_counter() - started) * 1000, 2),
                **self.grouping_key,
            )


_pushers: dict[tuple[str, float, float], Pusher] = {}
_pushers_lock = threading.Lock()


def pusher_for(url: str, interval_s: float, timeout_s: float) -> Pusher:
    """The process's pusher for these settings: every adapter built under the same settings
    shares one schedule. An empty `url` gives a pusher that never pushes."""
    key = (url, interval_s, timeout_s)
    with _pushers_lock:
        found = _pushers.get(key)
        if found is None:
            found = _pushers[key] = Pusher(url, interval_s, timeout_s)
        return found
