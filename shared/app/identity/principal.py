"""Who is calling, as of this request: the session the access token names, and the user as
the system knows them now (`app.identity.access`), not as the token remembers them."""

from __future__ import annotations

from dataclasses import dataclass

from app.profiles import User


@dataclass(frozen=True)
class Principal:
    user_id: str
    role: str  # the user's current role, never the token's claim
    sid: str
    user: User  # the profile the request was authorized by

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"
