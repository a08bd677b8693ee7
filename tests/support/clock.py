"""Another instance's wall clock, within this process: the standard library's `time.time`
moved for the calls made inside, the host's clock and Redis's left as they are."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from unittest import mock


@contextmanager
def clock_off_by(seconds: float) -> Iterator[None]:
    """Calls made inside read a wall clock `seconds` ahead (behind when negative)."""
    real = time.time
    with mock.patch("time.time", lambda: real() + seconds):
        yield
