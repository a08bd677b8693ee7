"""uvicorn's ERROR line after a WebSocket handshake the app refused on purpose, kept out of
the log.

The `ws` app refuses a handshake with an HTTP answer (`websocket.http.response.*`: 401 for
an expired token, 503 when the database cannot tell), which uvicorn sends as it should, but
its websockets-sansio implementation (0.38) never counts that as completing the handshake
and then logs "ASGI callable returned without completing handshake." at ERROR on the
`uvicorn.error` logger: a known upstream bug, https://github.com/Kludex/uvicorn/pull/3138.
Anything alerting on ERROR would fire on every expired token.

So the app marks the connection it refused (`mark_refused`, a context variable: uvicorn
logs that line from the connection's own task, in which the app ran), and the filter
`install` puts on `uvicorn.error` drops exactly that message for exactly those connections.
The app logs the refusal itself ("handshake refused": INFO, WARNING for a 503). The same
message from a connection the app did not refuse (it returned without answering: a bug)
is still an ERROR, as is any exception the app raises.
"""

from __future__ import annotations

import logging
from contextvars import ContextVar

UNCOMPLETED = "ASGI callable returned without completing handshake."

_refused: ContextVar[bool] = ContextVar("ws_handshake_refused", default=False)


def mark_refused() -> None:
    """The handshake of the running connection was refused by the app, on purpose."""
    _refused.set(True)


class _RefusedHandshake(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not (
            record.levelno == logging.ERROR
            and record.getMessage() == UNCOMPLETED
            and _refused.get()
        )


_FILTER = _RefusedHandshake()


def install() -> None:
    """Idempotent: a logger holds a filter once however often it is added."""
    logging.getLogger("uvicorn.error").addFilter(_FILTER)
