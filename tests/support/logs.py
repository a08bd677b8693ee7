"""Capture the JSON log lines the code writes, exactly as they would reach stdout."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from app.config import get_settings
from app.observability.logging import JsonFormatter, configure


class CapturedLogs:
    def __init__(self) -> None:
        self.stream = io.StringIO()

    @property
    def text(self) -> str:
        return self.stream.getvalue()

    @property
    def lines(self) -> list[dict[str, Any]]:
        """Each line parsed; a line that is not one JSON object fails the test here."""
        return [json.loads(line) for line in self.text.splitlines() if line.strip()]

    def where(self, **fields: Any) -> list[dict[str, Any]]:
        return [line for line in self.lines if all(line.get(k) == v for k, v in fields.items())]


@contextmanager
def capture_logs(level: int = logging.INFO) -> Iterator[CapturedLogs]:
    # As the first function entry of the process would: its configure replaces the root's
    # handlers, which would take this one away if it came later.
    configure(get_settings().log_level)
    captured = CapturedLogs()
    handler = logging.StreamHandler(captured.stream)
    handler.setFormatter(JsonFormatter())
    handler.setLevel(level)
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(min(old_level or logging.WARNING, level))
    try:
        yield captured
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
