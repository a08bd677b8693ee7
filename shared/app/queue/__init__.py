"""The queue port: publish a JSON message to a named queue, which is the function that
consumes it (`queue_handler`, app.events.queue).

Delivery is at least once and may be delayed or repeated: consumers must be idempotent,
and the saga sweeper finds work whose message was lost. Backends, chosen by QUEUE_BACKEND:
`scf` (SCF asynchronous invocation, app.queue.scf, which parks delayed messages in Redis
until `release_due`) and `local` (the local cloud's in-process broker, app.queue.local).
Each is imported only when first used.
"""

from __future__ import annotations

from typing import Any, Protocol

from app.config import get_settings


class QueueBackend(Protocol):
    def publish(self, queue: str, message: dict[str, Any], *, delay_s: float = 0) -> str:
        """Send one message; returns its id. Raises on failure (the caller decides)."""
        ...

    def release_due(self, queues: list[str] | None = None) -> int:
        """Send delayed messages that are due (a backend without native delays parks
        them); returns how many were sent."""
        ...


_backend: QueueBackend | None = None


def backend() -> QueueBackend:
    global _backend
    if _backend is None:
        if get_settings().queue_backend == "scf":
            from app.queue.scf import ScfBackend  # cold start: only the configured backend

            _backend = ScfBackend()
        else:
            from app.queue.local import LocalBackend  # cold start: only the configured backend

            _backend = LocalBackend()
    return _backend


def publish(queue: str, message: dict[str, Any], *, delay_s: float = 0) -> str:
    return backend().publish(queue, message, delay_s=delay_s)


def release_due() -> int:
    """Called by every queue function after its message and by the sweeper each minute."""
    return backend().release_due()
