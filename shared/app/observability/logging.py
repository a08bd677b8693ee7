"""JSON log lines on stdout (SCF ships stdout to CLS). One line per invocation, plus
whatever services log. Never pass a secret, a hash, a code or a session_key to a logger:
there is no scrubbing pass behind you.

Every line written while an invocation runs carries the ids its adapter bound for it
(`bound`: the function, the platform's request id, a job's name; `bind`, for the rest of
the enclosing block: the caller's user id, the task a worker's message is for until the
message ends), so a service's line leads to its invocation and its task without any service
passing ids around."""

from __future__ import annotations

import contextvars
import json
import logging
import sys
import time
import traceback
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

_configured = False
# The ids of the invocation this context serves; a context variable, so invocations on
# threads (or asyncio tasks) of one process never see each other's.
# None outside any invocation.
_BOUND: contextvars.ContextVar[Mapping[str, Any] | None] = contextvars.ContextVar(
    "log_ids", default=None
)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        line.update(_BOUND.get() or {})
        fields = getattr(record, "fields", None)
        if fields:
            line.update(fields)
        if record.exc_info:
            line["exception"] = "".join(traceback.format_exception(*record.exc_info)).rstrip()
        return json.dumps(line, ensure_ascii=False, default=str)


def configure(level: str = "INFO") -> None:
    """Idempotent: every function entry calls it, the first call wins."""
    global _configured
    if _configured:
        return
    _configured = True
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter())
    # SCF's Python runtime installs its own handler on the root logger; replace it so each
    # line is one JSON object.
    logging.getLogger().handlers = [handler]
    _set_levels(level)


# Libraries write their requests at DEBUG: URLs with their query strings (WeChat's
# jscode2session takes the app secret there), headers and bodies. Whatever LOG_LEVEL says,
# they speak from INFO up; only the app's own loggers go lower.
LIBRARY_LEVEL = logging.INFO


def _set_levels(level: str) -> None:
    """LOG_LEVEL for the app's loggers (`app.*`), and no lower than LIBRARY_LEVEL for
    everything else."""
    root = logging.getLogger()
    root.setLevel(level.upper())
    app = logging.getLogger("app")
    if root.level < LIBRARY_LEVEL:
        app.setLevel(root.level)
        root.setLevel(LIBRARY_LEVEL)
    else:
        app.setLevel(logging.NOTSET)


def get_logger(name: str) -> logging.Logger:
    return logging.getLogger(name)


def log_fields(logger: logging.Logger, level: int, message: str, **fields: Any) -> None:
    logger.log(level, message, extra={"fields": fields})


@contextmanager
def bound(**ids: Any) -> Iterator[None]:
    """Every line written inside the block carries `ids` (a line's own fields win), and
    whatever `bind` adds inside it, until the block ends."""
    token = _BOUND.set({**(_BOUND.get() or {}), **ids})
    try:
        yield
    finally:
        _BOUND.reset(token)


def bind(**ids: Any) -> None:
    """Add `ids` to the lines of the rest of the enclosing `bound` block: what becomes known
    during the invocation (who called, which task a message is for). Outside any block it
    does nothing: the ids would stay on every later line of the thread."""
    current = _BOUND.get()
    if current is not None:
        _BOUND.set({**current, **ids})
