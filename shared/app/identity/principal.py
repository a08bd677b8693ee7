"""Who is calling: read from a verified access token, never from the database."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Principal:
    user_id: str
    role: str
    sid: str
    phone: str | None = None

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"
