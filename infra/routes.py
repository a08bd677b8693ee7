"""The custom domain's path mapping, derived from the route table: never written by hand.

SCF's custom domain routes by path alone (`/x`, `/x/*`, `/*`), not by method, to one
function each. A route's path becomes one such pattern: a static path itself
(`/users/me`), a templated one its static head and `/*` (`/tasks/{id}/cancel` ->
`/tasks/*`). Routes whose patterns are the same must be served by one function, which routes
by method and path inside; a function serving no route at all takes `/*`, what no other
pattern claims (the API's 404). A web function (serverless.yml `web:`) has no route table:
it claims the one path it declares (`/ws`), which no route may share.

A path reaches the function of its exact pattern, else of the longest `/x/*` whose `/x/`
begins it, else of `/*`: the more specific pattern wins. The local cloud serves exactly this
mapping and the deployer writes exactly this one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

CATCH_ALL = "/*"


class MappingError(ValueError):
    pass


@dataclass(frozen=True, order=True)
class PathMapping:
    pattern: str  # `/x`, `/x/*` or `/*`
    function: str


def pattern_of(route_path: str) -> str:
    """The domain's path pattern that reaches a route's path."""
    parts = route_path.split("/")
    for index, part in enumerate(parts):
        if "{" in part:
            return "/".join(parts[:index]) + "/*"
    return route_path


def domain_mapping(
    routes_by_function: Mapping[str, Sequence[Any]], web_paths: Mapping[str, str] | None = None
) -> list[PathMapping]:
    """One mapping per pattern, from each function's routes (objects with a `.path`), and
    each web function's own path (`web_paths`: path -> function; it has no route table)."""
    owner: dict[str, str] = dict(web_paths or {})
    catch_all: list[str] = []
    for function, routes in sorted(routes_by_function.items()):
        if not routes:
            catch_all.append(function)
        for route in routes:
            pattern = pattern_of(route.path)
            claimed = owner.setdefault(pattern, function)
            if claimed != function:
                raise MappingError(
                    f"{pattern} is served by both {claimed} and {function}: routes that share "
                    "a path pattern must share a function"
                )
    if len(catch_all) > 1:
        raise MappingError(f"more than one function serves no route: {catch_all}")
    mappings = [PathMapping(pattern, function) for pattern, function in owner.items()]
    mappings += [PathMapping(CATCH_ALL, function) for function in catch_all]
    return sorted(mappings)


def resolve(mappings: Iterable[PathMapping], path: str) -> str | None:
    """The function the domain sends `path` to, or None when no pattern takes it."""
    best: tuple[int, str] | None = None
    for mapping in mappings:
        if mapping.pattern == path:
            return mapping.function
        if mapping.pattern.endswith("/*"):
            head = mapping.pattern[:-1]  # `/x/` (or `/` for the catch-all)
            if path.startswith(head) and (best is None or len(head) > best[0]):
                best = (len(head), mapping.function)
    return None if best is None else best[1]


def mapping_of_handlers(
    handlers: Mapping[str, Any], web_paths: Mapping[str, str] | None = None
) -> list[PathMapping]:
    """The mapping of loaded HTTP functions (`main_handler`s made by `http_handler`, which
    carry their `routes`) and of the web functions' paths."""
    return domain_mapping(
        {name: list(handler.routes) for name, handler in handlers.items()}, web_paths
    )
