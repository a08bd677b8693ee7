"""What a simulator answers one HTTP request with, for whatever server serves it (the local
cloud's sandbox, the tests' fakes)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SimAnswer:
    status: int
    headers: dict[str, str]
    body: bytes
