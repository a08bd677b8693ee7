"""The local queue backend: an in-process broker with the delivery rules of SCF's
asynchronous invocation.

`LocalBackend.publish` hands a message to the process's `Broker`; the local cloud subscribes
each asynchronously invoked function to the queue of its name. What the broker guarantees,
like the platform:
- at least once: a consumer that raises gets the message again after a backoff, up to
  `max_attempts` deliveries (the function's async retries); then the message is logged as
  dead and kept in `dead`;
- a subscription runs at most its `concurrency` deliveries at once (the instances SCF would
  run of the function), and the broker at most `workers` in all;
- `delay_s` holds a message back before its first delivery (which SCF cannot do: its
  backend parks such messages in Redis instead);
- a message published while nobody subscribes to its queue waits for the first subscriber;
- every subscriber of a queue gets its own copy.

Delivery is driven by condition variables, never by polling sleeps, so a hop through the
queue costs a thread wake-up. The broker lives in the process: it is the local cloud's, and
nothing here may be used on SCF (production refuses QUEUE_BACKEND=local).
"""

from __future__ import annotations

import heapq
import itertools
import logging
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from app.observability import logging as applog
from app.queue.limits import check_size, encode

log = applog.get_logger("app.queue.local")


@dataclass(frozen=True)
class Message:
    """One message as published: its id, queue, JSON text and publish time (epoch s)."""

    msg_id: str
    queue: str
    body: str
    published_at: float


@dataclass
class Delivery:
    """One subscriber's copy of a message; `attempt` counts deliveries made so far."""

    message: Message
    subscriber: str
    attempt: int = 0
    errors: list[str] = field(default_factory=list)


Consumer = Callable[[Message, int], None]
"""Called with the message and the delivery number (1 for the first). Raise to get it again."""


class Broker:
    def __init__(
        self,
        *,
        workers: int = 8,
        max_attempts: int = 5,
        backoff_s: float = 0.5,
        backoff_max_s: float = 30.0,
    ) -> None:
        self.workers = workers
        self.max_attempts = max_attempts
        self.backoff_s = backoff_s
        self.backoff_max_s = backoff_max_s
        self._lock = threading.Lock()
        self._work = threading.Condition(self._lock)  # a delivery became ready or is due
        self._idle = threading.Condition(self._lock)  # nothing left to do
        self._ready: deque[Delivery] = deque()
        self._delayed: list[tuple[float, int, Delivery | Message]] = []
        self._parked: dict[str, list[Message]] = {}
        self._subscribers: dict[str, dict[str, Consumer]] = {}
        self._limits: dict[tuple[str, str], int] = {}  # (queue, subscription) -> at once
        self._running: dict[tuple[str, str], int] = {}
        self._in_flight = 0
        self._seq = itertools.count()
        self._threads: list[threading.Thread] = []
        self._stopping = False
        self.dead: list[Delivery] = []
        self.delivered = 0

    # -- publishing and subscribing ---------------------------------------------------------

    def publish(self, queue: str, body: str, *, delay_s: float = 0) -> str:
        message = Message(secrets.token_hex(16), queue, body, time.time())
        with self._lock:
            if delay_s > 0:
                self._schedule(time.monotonic() + delay_s, message)
            else:
                self._fan_out(message)
        return message.msg_id

    def subscribe(
        self, queue: str, name: str, consumer: Consumer, *, concurrency: int | None = None
    ) -> None:
        """Deliver `queue` to `consumer` under the subscription `name` (one per function),
        at most `concurrency` deliveries at once (no limit of its own when None)."""
        with self._lock:
            self._subscribers.setdefault(queue, {})[name] = consumer
            if concurrency is None:
                self._limits.pop((queue, name), None)
            else:
                self._limits[(queue, name)] = max(concurrency, 1)
            for message in self._parked.pop(queue, []):
                self._ready.append(Delivery(message, name))
            self._ensure_workers()
            self._work.notify_all()

    def unsubscribe(self, queue: str, name: str) -> None:
        with self._lock:
            subscribers = self._subscribers.get(queue, {})
            subscribers.pop(name, None)
            if not subscribers:
                self._subscribers.pop(queue, None)

    def drop_parked(self, queue: str | None = None) -> int:
        """Forget messages waiting for a subscriber (of `queue`, or of every queue), so a
        test can start a consumer without the leftovers of earlier ones. Returns the count."""
        with self._lock:
            queues = [queue] if queue is not None else list(self._parked)
            return sum(len(self._parked.pop(name, [])) for name in queues)

    # -- waiting ----------------------------------------------------------------------------

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Block until nothing is ready, running or scheduled (parked messages of queues
        nobody subscribes to do not count). Returns False on timeout."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._ready or self._in_flight or self._delayed:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._idle.wait(remaining)
            return True

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {
                "ready": len(self._ready),
                "in_flight": self._in_flight,
                "delayed": len(self._delayed),
                "parked": sum(len(v) for v in self._parked.values()),
                "delivered": self.delivered,
                "dead": len(self.dead),
            }

    def stop(self, timeout: float = 5.0) -> None:
        with self._lock:
            self._stopping = True
            self._work.notify_all()
        for thread in self._threads:
            thread.join(timeout)
        with self._lock:
            self._threads = []
            self._stopping = False

    # -- internals (called with the lock held) ----------------------------------------------

    def _fan_out(self, message: Message) -> None:
        subscribers = self._subscribers.get(message.queue)
        if not subscribers:
            self._parked.setdefault(message.queue, []).append(message)
            return
        for name in subscribers:
            self._ready.append(Delivery(message, name))
        self._work.notify(len(subscribers))

    def _schedule(self, due: float, item: Delivery | Message) -> None:
        heapq.heappush(self._delayed, (due, next(self._seq), item))
        # The earliest due time may have changed: a waiting worker recomputes its timeout.
        self._work.notify()

    def _release_due(self, now: float) -> float | None:
        """Move due items to ready; return seconds until the next one, or None."""
        while self._delayed and self._delayed[0][0] <= now:
            _, _, item = heapq.heappop(self._delayed)
            if isinstance(item, Message):
                self._fan_out(item)
            elif item.subscriber in self._subscribers.get(item.message.queue, {}):
                self._ready.append(item)
                self._work.notify()
            else:
                self._parked.setdefault(item.message.queue, []).append(item.message)
        return self._delayed[0][0] - now if self._delayed else None

    def _ensure_workers(self) -> None:
        self._threads = [t for t in self._threads if t.is_alive()]
        wanted = max(self.workers, sum(self._limits.values()))
        while len(self._threads) < wanted:
            thread = threading.Thread(
                target=self._work_loop, name=f"local-queue-{len(self._threads)}", daemon=True
            )
            self._threads.append(thread)
            thread.start()

    def _next(self) -> tuple[Delivery, Consumer] | None:
        with self._lock:
            while not self._stopping:
                wait_s = self._release_due(time.monotonic())
                # Each ready delivery looked at once: one whose subscription is running all
                # it may goes to the back and waits for a running one to end.
                for _ in range(len(self._ready)):
                    delivery = self._ready.popleft()
                    key = (delivery.message.queue, delivery.subscriber)
                    consumer = self._subscribers.get(key[0], {}).get(key[1])
                    if consumer is None:  # unsubscribed meanwhile: wait for the next one
                        self._parked.setdefault(delivery.message.queue, []).append(delivery.message)
                        continue
                    limit = self._limits.get(key)
                    if limit is not None and self._running.get(key, 0) >= limit:
                        self._ready.append(delivery)
                        continue
                    self._running[key] = self._running.get(key, 0) + 1
                    self._in_flight += 1
                    delivery.attempt += 1
                    return delivery, consumer
                if not self._delayed and not self._in_flight:
                    self._idle.notify_all()
                self._work.wait(wait_s)
            return None

    def _work_loop(self) -> None:
        while True:
            job = self._next()
            if job is None:
                return
            delivery, consumer = job
            try:
                consumer(delivery.message, delivery.attempt)
            except Exception as error:  # noqa: BLE001 - any failure means "deliver again"
                self._failed(delivery, error)
            finally:
                with self._lock:
                    key = (delivery.message.queue, delivery.subscriber)
                    self._running[key] -= 1
                    self._in_flight -= 1
                    self.delivered += 1
                    self._work.notify()  # a delivery held back by the limit may go now
                    if not self._ready and not self._in_flight and not self._delayed:
                        self._idle.notify_all()

    def _failed(self, delivery: Delivery, error: Exception) -> None:
        delivery.errors.append(f"{type(error).__name__}: {error}")
        fields: dict[str, Any] = {
            "queue": delivery.message.queue,
            "subscription": delivery.subscriber,
            "msg_id": delivery.message.msg_id,
            "attempt": delivery.attempt,
            "error": type(error).__name__,
        }
        if delivery.attempt >= self.max_attempts:
            applog.log_fields(log, logging.ERROR, "queue message dead", **fields)
            with self._lock:
                self.dead.append(delivery)
            return
        backoff = min(self.backoff_s * 2 ** (delivery.attempt - 1), self.backoff_max_s)
        applog.log_fields(
            log, logging.WARNING, "queue message redelivered", **fields, retry_in_s=backoff
        )
        with self._lock:
            self._schedule(time.monotonic() + backoff, delivery)


_broker: Broker | None = None
_broker_lock = threading.Lock()


def broker() -> Broker:
    """The broker of this process, shared by every publisher and the local cloud."""
    global _broker
    with _broker_lock:
        if _broker is None:
            _broker = Broker()
        return _broker


class LocalBackend:
    """The queue port's `local` backend: JSON-encodes and hands over to the process broker,
    refusing (PublishFailed) a message over SCF's event limit as the `scf` backend does."""

    def publish(self, queue: str, message: dict[str, Any], *, delay_s: float = 0) -> str:
        body = encode(message)
        check_size(queue, body)
        return broker().publish(queue, body, delay_s=delay_s)

    def release_due(self, queues: list[str] | None = None) -> int:
        return 0  # the broker delays natively
