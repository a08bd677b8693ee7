"""The request a route handler sees: typed body and query, headers that ignore case."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from app.audit import Actor
from app.errors import AppError, ErrorCode

if TYPE_CHECKING:
    from app.identity.principal import Principal

B = TypeVar("B")
Q = TypeVar("Q")


class Headers(Mapping[str, str]):
    """Case-insensitive, read-only: header names compare in any case."""

    __slots__ = ("_items",)

    def __init__(self, raw: Mapping[str, Any] | None = None) -> None:
        self._items: dict[str, str] = {}
        for key, value in (raw or {}).items():
            if value is None:
                continue
            self._items[str(key).lower()] = str(value)

    def __getitem__(self, key: str) -> str:
        return self._items[key.lower()]

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key.lower() in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: str, default: Any = None) -> Any:
        return self._items.get(key.lower(), default)


@dataclass
class Request(Generic[B, Q]):
    method: str
    path: str
    headers: Headers
    query_params: dict[str, list[str]]
    raw_body: bytes
    path_params: dict[str, str]
    source_ip: str
    request_id: str
    # Filled by the resolver from the route's declarations.
    body: B = None  # type: ignore[assignment]
    query: Q = None  # type: ignore[assignment]
    principal: Principal | None = None
    route_path: str = ""
    extra_log: dict[str, Any] = field(default_factory=dict)

    def idempotency_key(self, *, max_length: int = 255) -> str | None:
        """The `Idempotency-Key` header, trimmed; None when absent. Anything but 1 to
        `max_length` printable characters is `422 VALIDATION_ERROR` naming the header."""
        raw = self.headers.get("idempotency-key")
        if raw is None:
            return None
        key = str(raw).strip()
        if not key or len(key) > max_length or not key.isprintable():
            raise AppError(
                ErrorCode.VALIDATION_ERROR,
                "The Idempotency-Key header is not valid.",
                details=[
                    {
                        "loc": ["header", "Idempotency-Key"],
                        "msg": f"1-{max_length} printable characters",
                    }
                ],
            )
        return key

    @property
    def user(self) -> Principal:
        """The signed-in caller; only routes declared `user` or `admin` may ask."""
        if self.principal is None:  # pragma: no cover - a route declaration bug
            raise RuntimeError(f"route {self.route_path} is public but asked for the user")
        return self.principal

    @property
    def actor(self) -> Actor:
        """The signed-in caller as the actor of the change this request makes, for the audit
        trail (app.audit): an admin route hands it to the domain verb."""
        return Actor(user_id=self.user.user_id, request_id=self.request_id)
