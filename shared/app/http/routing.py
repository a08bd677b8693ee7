"""Route declarations: method, path, auth level, models, status and docs, in one place.

A route is declared once, on a Router, with everything the resolver and the OpenAPI
document need. The auth level is mandatory so that no route is public by accident.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from pydantic import BaseModel


class Auth(str, Enum):
    PUBLIC = "public"
    USER = "user"
    ADMIN = "admin"
    # Public at the HTTP level; the handler verifies a provider's signature itself.
    SIGNATURE = "signature"
    # The bearer METRICS_TOKEN when it is set (production requires it); open when unset.
    METRICS = "metrics"


_PARAM = re.compile(r"\{([a-zA-Z_][a-zA-Z0-9_]*)\}")


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    handler: Callable[..., Any]
    auth: Auth
    body: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    response: Any = None  # a pydantic model class, or None for raw/empty responses
    status: int = 200
    summary: str = ""
    tags: tuple[str, ...] = ()
    # Extra responses for the OpenAPI document: status -> description.
    errors: tuple[int, ...] = ()
    content_type: str | None = None  # non-JSON success body (text/html, text/plain ...)
    # The shape of the `errors` answers when they are not the API's envelope: a provider's
    # webhook answers in the provider's own words (the document describes them so).
    error_response: Any = None
    # The route honours an `Idempotency-Key` header of at most this many characters (the
    # handler reads it with `Request.idempotency_key`); the document describes the header.
    idempotency_key: int | None = None
    include_in_schema: bool = True
    _pattern: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_pattern", compile_path(self.path))

    @property
    def is_static(self) -> bool:
        return "{" not in self.path

    @property
    def operation_id(self) -> str:
        return self.handler.__name__

    def match(self, path: str) -> dict[str, str] | None:
        found = self._pattern.match(path)
        return found.groupdict() if found else None


def compile_path(path: str) -> re.Pattern[str]:
    """`/tasks/{id}` -> a regex whose named groups are the path parameters."""
    parts, pos = [], 0
    for param in _PARAM.finditer(path):
        parts.append(re.escape(path[pos : param.start()]))
        parts.append(f"(?P<{param.group(1)}>[^/]+)")
        pos = param.end()
    parts.append(re.escape(path[pos:]))
    # `\Z`, not `$`: `$` also matches before a final newline, which a client sends as `%0A`.
    return re.compile("^" + "".join(parts) + r"\Z")


class Router:
    """A group of routes, usually one resource. Decorators return the Route itself."""

    def __init__(self, tags: tuple[str, ...] = ()) -> None:
        self.tags = tags
        self.routes: list[Route] = []

    def route(
        self, method: str, path: str, *, auth: Auth, **options: Any
    ) -> Callable[[Callable[..., Any]], Route]:
        def register(handler: Callable[..., Any]) -> Route:
            options.setdefault("tags", self.tags)
            options["tags"] = tuple(options["tags"])
            options["errors"] = tuple(options.get("errors", ()))
            declared = Route(
                method=method.upper(), path=path, handler=handler, auth=auth, **options
            )
            self.routes.append(declared)
            return declared

        return register

    def get(
        self, path: str, *, auth: Auth, **options: Any
    ) -> Callable[[Callable[..., Any]], Route]:
        return self.route("GET", path, auth=auth, **options)

    def post(
        self, path: str, *, auth: Auth, **options: Any
    ) -> Callable[[Callable[..., Any]], Route]:
        return self.route("POST", path, auth=auth, **options)

    def put(
        self, path: str, *, auth: Auth, **options: Any
    ) -> Callable[[Callable[..., Any]], Route]:
        return self.route("PUT", path, auth=auth, **options)

    def patch(
        self, path: str, *, auth: Auth, **options: Any
    ) -> Callable[[Callable[..., Any]], Route]:
        return self.route("PATCH", path, auth=auth, **options)

    def delete(
        self, path: str, *, auth: Auth, **options: Any
    ) -> Callable[[Callable[..., Any]], Route]:
        return self.route("DELETE", path, auth=auth, **options)


def served_as(method: str) -> str:
    """The method of the route that serves `method`: a HEAD is its path's GET without the
    content (RFC 9110 9.3.2), served by the GET's handler; the resolver drops the body."""
    return "GET" if method == "HEAD" else method


def find_route(
    routes: list[Route], method: str, path: str
) -> tuple[Route | None, dict[str, str], bool]:
    """Static paths win over templated ones. Returns (route, params, path_known)."""
    method = served_as(method)
    path_known = False
    ordered = sorted(routes, key=lambda r: not r.is_static)
    for candidate in ordered:
        params = candidate.match(path)
        if params is None:
            continue
        path_known = True
        if candidate.method == method:
            return candidate, params, True
    return None, {}, path_known


def allowed_methods(routes: list[Route], path: str) -> list[str]:
    """The methods some route serves on this path (a 405's `Allow` header), HEAD with GET."""
    methods = {route.method for route in routes if route.match(path) is not None}
    if "GET" in methods:
        methods.add("HEAD")
    return sorted(methods)
