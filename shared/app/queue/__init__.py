"""The queue port: publish a JSON message to a named queue; the platform delivers it to the
function whose `cmq` trigger names that queue.

Delivery is at least once and may be delayed or repeated: consumers must be idempotent,
and the saga sweeper finds work whose message was lost. Backends, chosen by QUEUE_BACKEND:
`local` (the local cloud's in-process broker, app.queue.local) and `cmq` (TDMQ for CMQ
topics, app.queue.cmq, which parks delayed messages in Redis until `release_due`). Each is
imported only when first used.
"""

from __future__ import annotations

from typing import Any, Protocol

from app.config import get_settings


class QueueBackend(Protocol):
    def publish(self, queue: str, message: dict[str, Any], *, delay_s: float = 0) -> str:
        """Send one message; returns its id. Raises on failure (the caller decides)."""
        ...

    def release_due(self, topics: list[str] | None = None) -> int:
        """Send delayed messages that are due (a backend without native delays parks
        them); returns how many were sent."""
        ...


_backend: QueueBackend | None = None


def backend() -> QueueBackend:
    global _backend
    if _backend is None:
        if get_settings().queue_backend == "cmq":
            from app.queue.cmq import CmqBackend  # cold start: only the configured backend

            _backend = CmqBackend()
        else:
            from app.queue.local import LocalBackend  # cold start: only the configured backend

            _backend = LocalBackend()
    return _backend


def publish(queue: str, message: dict[str, Any], *, delay_s: float = 0) -> str:
    return backend().publish(queue, message, delay_s=delay_s)


def release_due() -> int:
    """Called by every queue function after its batch and by the sweeper each minute."""
    return backend().release_due()
