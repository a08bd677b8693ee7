"""Event in, answer out: match, authenticate, validate, call, render.

`http_handler(route, ...)` builds an SCF `main_handler` for one function. Everything a
client can send that is wrong ends as a 4xx with the error envelope; a dependency down or a
lock conflict that no try resolved in time as `503 SERVICE_UNAVAILABLE`; anything else is a
bug and ends as `500 INTERNAL_ERROR` with the request id, the stack trace in the log only.
The invocation's end (the context's `time_limit_in_ms`) is known to the code it calls
(`app.clock.time_left`).

Each invocation ends with one log line: its RED numbers and the counters it moved (a
`Tally` is open around the work), then, once the answer is built, the instance's metrics
push when one is due (`app.observability.push`).
"""

from __future__ import annotations

import logging
import time
import typing
from collections.abc import Callable, Mapping
from typing import Any

from pydantic import BaseModel, ValidationError

from app.clock import invocation_ending, invocation_ends_at
from app.db.conflicts import lock_conflict_code
from app.errors import AppError, ErrorCode
from app.http.auth import authenticate
from app.http.event import (
    answer,
    body_size,
    client_address_of,
    origin_of,
    parse_event,
    request_id_of,
)
from app.http.request import Request
from app.http.response import JSON_CONTENT_TYPE, Response, dump_json
from app.http.routing import Route, allowed_methods, find_route
from app.observability import logging as applog
from app.observability.instruments import Tally
from app.observability.metrics import HTTP_DURATION, HTTP_REQUESTS
from app.observability.push import pusher_for
from app.redis_client import is_unreachable
from app.startup import instance_settings

log = applog.get_logger("app.http")
# The methods a request's metrics and log line name; any other is "OTHER".
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# Chromium keeps a preflight's answer at most 2 h; 10 min lets a change of the allowed
# origins reach browsers soon.
PREFLIGHT_MAX_AGE_S = "600"
MainHandler = Callable[[Mapping[str, Any], Any], dict[str, Any]]


def validation_details(exc: ValidationError, prefix: str) -> list[dict[str, Any]]:
    return [
        {"loc": [prefix, *[p for p in err["loc"] if p != "__root__"]], "msg": err["msg"]}
        for err in exc.errors(include_url=False, include_input=False)
    ]


def _is_list_field(annotation: Any) -> bool:
    origin = typing.get_origin(annotation)
    if origin in (list, tuple, set, frozenset):
        return True
    return any(_is_list_field(arg) for arg in typing.get_args(annotation) if arg is not type(None))


def _query_input(model: type[BaseModel], params: dict[str, list[str]]) -> dict[str, Any]:
    # A scalar parameter sent twice takes its last value, as most frameworks do; parameters
    # the model does not name are ignored.
    data: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        key = info.alias or name
        if key in params:
            values = params[key]
            data[key] = values if _is_list_field(info.annotation) else values[-1]
    return data


def _method_of(request: Request[Any, Any] | None, event: Mapping[str, Any]) -> str:
    """The request's method, read from the event when the request could not be parsed."""
    return request.method if request else str(event.get("httpMethod") or "").upper()


class HttpApp:
    def __init__(self, routes: list[Route]) -> None:
        self.routes = routes
        settings = instance_settings()
        self.cors_origins = settings.cors_origins
        self.max_body = settings.max_body_bytes
        self.pusher = pusher_for(*settings.metrics_push)

    def __call__(self, event: Mapping[str, Any], context: Any = None) -> dict[str, Any]:
        started = time.perf_counter()
        context = context if isinstance(context, Mapping) else {}
        request_id = request_id_of(context)
        function = str(context.get("function_name") or "")
        ends_at = invocation_ends_at(context, time.monotonic())
        with applog.bound(function=function, request_id=request_id), invocation_ending(ends_at):
            return self._invocation(event, function, request_id, started)

    def _invocation(
        self, event: Mapping[str, Any], function: str, request_id: str, started: float
    ) -> dict[str, Any]:
        route: Route | None = None
        request: Request[Any, Any] | None = None
        failure: AppError | None = None
        with Tally() as tally:
            try:
                if body_size(event) > self.max_body:  # before anything else is looked at
                    raise AppError(
                        ErrorCode.PAYLOAD_TOO_LARGE,
                        details=[{"loc": ["body"], "msg": f"at most {self.max_body} bytes"}],
                    )
                request = parse_event(event, request_id)
                if request.method == "OPTIONS" and self.cors_origins:
                    response = Response(204)
                else:
                    route = self._match(request)
                    response = self._dispatch(route, request)
            except AppError as exc:
                failure = exc
            except Exception as exc:  # noqa: BLE001 - the last resort: every failure gets an answer
                failure = self._unexpected(exc)
            if failure is not None:
                response = Response.json(
                    failure.envelope(request_id), failure.status, failure.headers
                )
        response.headers["X-Request-Id"] = request_id
        # Answers hold tokens and a user's own data: no cache keeps one (RFC 6749 5.1 asks it
        # of tokens) unless its route says otherwise (the docs' assets).
        response.headers.setdefault("Cache-Control", "no-store")
        self._cors(origin_of(event), response)
        if _method_of(request, event) == "HEAD":  # whatever the answer, it carries no content
            response = response.without_content()
        self._observe(route, request, event, function, response, failure, started, tally)
        payload = answer(response)
        self.pusher.after_invocation(function)
        return payload

    @staticmethod
    def _unexpected(exc: Exception) -> AppError:
        """A dependency that is down is 503, and so is a lock conflict that no try resolved
        in time (the request may be sent again: its transaction was rolled back); anything
        else a bug: 500, trace to the log."""
        if is_unreachable(exc):
            applog.log_fields(
                log, logging.ERROR, "dependency unavailable", error=type(exc).__name__
            )
            return AppError(ErrorCode.SERVICE_UNAVAILABLE)
        conflict = lock_conflict_code(exc)
        if conflict is not None:
            applog.log_fields(log, logging.WARNING, "db lock conflict", code=conflict)
            # Contention, not an outage: worth sending again soon (RFC 9110 10.2.3).
            return AppError(ErrorCode.SERVICE_UNAVAILABLE, headers={"Retry-After": "1"})
        log.exception("unhandled error")
        return AppError(ErrorCode.INTERNAL_ERROR)

    def _match(self, request: Request[Any, Any]) -> Route:
        route, params, path_known = find_route(self.routes, request.method, request.path)
        if route is None:
            if path_known:
                # RFC 9110: a 405 names the methods the resource does support.
                allow = ", ".join(allowed_methods(self.routes, request.path))
                raise AppError(ErrorCode.METHOD_NOT_ALLOWED, headers={"Allow": allow})
            raise AppError(ErrorCode.NOT_FOUND)
        request.path_params = params
        request.route_path = route.path
        return route

    def _dispatch(self, route: Route, request: Request[Any, Any]) -> Response:
        request.principal = authenticate(request, route.auth)
        if request.principal is not None:
            applog.bind(user_id=request.principal.user_id)
        if route.body is not None:
            request.body = self._parse_body(route.body, request.raw_body)
        if route.query is not None:
            try:
                request.query = route.query.model_validate(
                    _query_input(route.query, request.query_params)
                )
            except ValidationError as exc:
                raise AppError(
                    ErrorCode.VALIDATION_ERROR, details=validation_details(exc, "query")
                ) from exc
        return self._render(route, route.handler(request))

    def _parse_body(self, model: type[BaseModel], raw: bytes) -> BaseModel:
        try:
            return model.model_validate_json(raw or b"{}")
        except ValidationError as exc:
            raise AppError(
                ErrorCode.VALIDATION_ERROR, details=validation_details(exc, "body")
            ) from exc

    @staticmethod
    def _render(route: Route, result: Any) -> Response:
        if isinstance(result, Response):
            return result
        if result is None:
            return Response(route.status)
        if isinstance(result, BaseModel):
            body = result.model_dump_json()
        elif (
            route.response is not None
            and isinstance(route.response, type)
            and issubclass(route.response, BaseModel)
        ):
            body = route.response.model_validate(result).model_dump_json()
        else:
            body = dump_json(result)
        return Response(route.status, body, {}, route.content_type or JSON_CONTENT_TYPE)

    def _cors(self, origin: str | None, response: Response) -> None:
        """The CORS headers for an allowed `origin`, on every answer: without them on an
        error the browser hides its body. Every answer says it varies by Origin, those given
        without the headers too, so that no cache hands one of those to an allowed origin."""
        if not self.cors_origins:
            return
        response.headers["Vary"] = "Origin"
        if origin and (origin in self.cors_origins or "*" in self.cors_origins):
            response.headers["Access-Control-Allow-Origin"] = origin
            # Each call with a token is preflighted, and each preflight is an invocation: a
            # browser keeps this answer that long (5 s without it).
            response.headers["Access-Control-Max-Age"] = PREFLIGHT_MAX_AGE_S
            response.headers["Access-Control-Allow-Headers"] = (
                "Authorization, Content-Type, Idempotency-Key"
            )
            response.headers["Access-Control-Allow-Methods"] = (
                "GET, POST, PUT, PATCH, DELETE, OPTIONS"
            )
            response.headers["Access-Control-Expose-Headers"] = "X-Request-Id"

    @staticmethod
    def _observe(
        route: Route | None,
        request: Request[Any, Any] | None,
        event: Mapping[str, Any],
        function: str,
        response: Response,
        failure: AppError | None,
        started: float,
        tally: Tally,
    ) -> None:
        """The RED numbers (recorded after the tally closed: the line states them itself) and
        the invocation's log line, with the counters it moved. The line names the client's
        address and, for a refusal, its code: who is hammering the sign-in or the SMS limits
        shows in the log without a lookup elsewhere (the status alone does not tell a wrong
        password from a closed limit)."""
        elapsed = time.perf_counter() - started
        method = _method_of(request, event)
        # A method is the client's to invent, and each label value is a series kept for the
        # instance's life: those the API does not use count together.
        if method not in METHODS:
            method = "OTHER"
        route_path = route.path if route else "unmatched"
        HTTP_REQUESTS.labels(function, method, route_path, str(response.status)).inc()
        HTTP_DURATION.labels(function, method, route_path).observe(elapsed)
        # Its function and request id are the invocation's bound ids, as on every line of it.
        fields: dict[str, Any] = {
            "method": method,
            "route": route_path,
            "status": response.status,
            "duration_ms": round(elapsed * 1000, 2),
            "client_ip": client_address_of(event),
        }
        if failure is not None:
            fields["error"] = failure.code.value
        if request is not None:
            if request.principal is not None:
                fields["user_id"] = request.principal.user_id
            fields.update(request.extra_log)
        fields.update(tally.fields())
        level = logging.ERROR if response.status >= 500 else logging.INFO
        applog.log_fields(log, level, "invocation", **fields)


def http_handler(*routes: Route) -> MainHandler:
    """The SCF entry of a function that serves these routes (usually one)."""
    return HttpApp(list(routes))
