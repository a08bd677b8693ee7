"""uvicorn's ERROR lines that are no failure of the server, kept out of the log.

- A refused handshake. The `ws` app refuses a handshake with an HTTP answer
  (`websocket.http.response.*`: 401 for an expired token, 503 when the database cannot
  tell), which uvicorn sends as it should, but its websockets-sansio implementation (0.38)
  never counts that as completing the handshake and then logs "ASGI callable returned
  without completing handshake." at ERROR on the `uvicorn.error` logger: a known upstream
  bug, https://github.com/Kludex/uvicorn/pull/3138. Anything alerting on ERROR would fire
  on every expired token. So the app marks the connection it refused (`mark_refused`, a
  context variable: uvicorn logs that line from the connection's own task, in which the app
  ran), and the filter drops exactly that message for exactly those connections. The app
  logs the refusal itself ("handshake refused": INFO, WARNING for a 503). The same message
  from a connection the app did not refuse (it returned without answering: a bug) is still
  an ERROR, as is any exception the app raises.
- A text message that is not UTF-8. uvicorn closes the connection with 1007, as the
  protocol asks, and logs "Invalid UTF-8 sequence received from client." at ERROR with the
  decoding error's traceback: any client could put an ERROR and a stack trace in the log at
  will. The filter drops it; the app's "connection closed" line names the code the
  connection ended with (`client_code`, 1007).
"""

from __future__ import annotations

import logging
from contextvars import ContextVar

UNCOMPLETED = "ASGI callable returned without completing handshake."
INVALID_UTF8 = "Invalid UTF-8 sequence received from client."

_refused: ContextVar[bool] = ContextVar("ws_handshake_refused", default=False)


def mark_refused() -> None:
    """The handshake of the running connection was refused by the app, on purpose."""
    _refused.set(True)


class _NoFailure(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.ERROR:
            return True
        message = record.getMessage()
        return not (message == INVALID_UTF8 or (message == UNCOMPLETED and _refused.get()))


_FILTER = _NoFailure()


def install() -> None:
    """Idempotent: a logger holds a filter once however often it is added."""
    logging.getLogger("uvicorn.error").addFilter(_FILTER)
