"""A connection's allowance for what a client's messages may cost: a token bucket, `burst`
at once and `per_s` after that, kept in the connection's own memory (one connection is one
instance on SCF, so nothing is shared)."""

from __future__ import annotations

import time


class Allowance:
    """A token bucket: `burst` at once, refilled at `per_s`."""

    def __init__(self, burst: int, per_s: float) -> None:
        self.burst = burst
        self.per_s = per_s
        self.left = float(burst)
        self.at = time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.left = min(self.burst, self.left + (now - self.at) * self.per_s)
        self.at = now
        if self.left < 1:
            return False
        self.left -= 1
        return True
