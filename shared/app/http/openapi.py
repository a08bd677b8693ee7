"""The OpenAPI 3.1 document, generated from the route table and its pydantic models, so
the document cannot drift from what the handlers accept and return; a WebSocket, served
outside the table, is described beside it (`WebSocket`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from app.http.models import ErrorBody
from app.http.routing import _PARAM, Auth, Route

_REF = "#/components/schemas/{model}"
_ERROR_TEXT = {
    400: "Rejected by a business rule",
    401: "Missing or invalid credentials",
    402: "Not enough quota",
    403: "Not allowed",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    413: "The body is too large",
    422: "Validation error",
    429: "Rate limited",
    502: "An upstream provider failed",
    503: "Temporarily unavailable",
}


@dataclass(frozen=True)
class WebSocket:
    """A WebSocket endpoint. It is served by an ASGI function of its own, not the route
    table, and OpenAPI has no WebSocket operation, so it is described as the GET of its
    handshake: answered 101 Switching Protocols, or refused before any upgrade with the
    API's error envelope at one of `errors` (and 422: a GET that is not a handshake)."""

    path: str
    operation_id: str
    summary: str
    description: str  # what flows over the connection, in the document's words
    query: type[BaseModel]
    errors: tuple[int, ...]
    tags: tuple[str, ...]


def _model_of(value: Any) -> type[BaseModel] | None:
    return value if isinstance(value, type) and issubclass(value, BaseModel) else None


def _component(ref: dict[str, Any], schemas: dict[str, Any]) -> dict[str, Any]:
    """The schema a `$ref` names. Looked up by the name the schema generator gave it: models
    (and enums) sharing a class name across modules get qualified names, and refs with them."""
    found: dict[str, Any] = schemas[ref["$ref"].rsplit("/", 1)[1]]
    return found


def build(
    routes: list[Route], *, title: str, version: str, websockets: Sequence[WebSocket] = ()
) -> dict[str, Any]:
    wanted: list[tuple[type[BaseModel], JsonSchemaMode]] = [(ErrorBody, "serialization")]
    wanted.extend((socket.query, "validation") for socket in websockets)
    for route in routes:
        for model, mode in (
            (route.body, "validation"),
            (route.query, "validation"),
            (_model_of(route.response), "serialization"),
            (_model_of(route.error_response), "serialization"),
        ):
            if model is not None and (model, mode) not in wanted:
                wanted.append((model, mode))  # type: ignore[arg-type]
    refs, top = models_json_schema(wanted, ref_template=_REF)
    schemas: dict[str, Any] = dict(top.get("$defs", {}))
    error_ref = refs[(ErrorBody, "serialization")]

    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        if not route.include_in_schema:
            continue
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(
            route, refs, schemas, error_ref
        )
    for socket in websockets:
        paths.setdefault(socket.path, {})["get"] = _handshake(socket, refs, schemas, error_ref)
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
                "metricsToken": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "METRICS_TOKEN; the route is open while it is unset",
                },
            },
        },
    }


def _operation(
    route: Route, refs: dict[Any, Any], schemas: dict[str, Any], error_ref: dict[str, Any]
) -> dict[str, Any]:
    op: dict[str, Any] = {
        "operationId": route.operation_id,
        "summary": route.summary or route.operation_id.replace("_", " "),
        "tags": list(route.tags),
        "parameters": [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in _PARAM.findall(route.path)
        ],
    }
    if route.query is not None:
        op["parameters"].extend(_query_parameters(route.query, refs, schemas))
    if route.idempotency_key is not None:
        op["parameters"].append(
            {
                "name": "Idempotency-Key",
                "in": "header",
                "required": False,
                "schema": {"type": "string", "minLength": 1, "maxLength": route.idempotency_key},
            }
        )
    if route.body is not None:
        body_ref = refs[(route.body, "validation")]
        op["requestBody"] = {
            # A body left out is read as `{}`: only a model with required fields needs one.
            "required": bool(_component(body_ref, schemas).get("required")),
            "content": {"application/json": {"schema": body_ref}},
        }
    if route.auth in (Auth.USER, Auth.ADMIN):
        op["security"] = [{"bearer": []}]
    elif route.auth is Auth.METRICS:
        op["security"] = [{"metricsToken": []}, {}]

    success: dict[str, Any] = {"description": route.summary or "OK"}
    response_model = _model_of(route.response)
    if response_model is not None:
        success["content"] = {
            "application/json": {"schema": refs[(response_model, "serialization")]}
        }
    elif route.content_type:
        media_type = route.content_type.split(";")[0]
        raw = {"type": "object"} if media_type == "application/json" else {"type": "string"}
        success["content"] = {media_type: {"schema": raw}}
    responses: dict[str, Any] = {str(route.status): success}

    codes = set(route.errors)
    if route.body is not None or route.query is not None:
        codes.add(422)
    if route.body is not None:
        codes.add(413)
    if route.auth in (Auth.USER, Auth.ADMIN, Auth.METRICS):
        codes.add(401)
    if route.auth in (Auth.USER, Auth.ADMIN):
        codes.add(403)  # every token of a disabled user is ACCOUNT_DISABLED; admins' FORBIDDEN
    own_errors = _model_of(route.error_response)
    for code in sorted(codes):
        schema = error_ref
        if own_errors is not None and code in route.errors:
            schema = refs[(own_errors, "serialization")]
        responses[str(code)] = {
            "description": _ERROR_TEXT.get(code, "Error"),
            "content": {"application/json": {"schema": schema}},
        }
    op["responses"] = responses
    return op


def _query_parameters(
    model: type[BaseModel], refs: dict[Any, Any], schemas: dict[str, Any]
) -> list[dict[str, Any]]:
    query_schema = _component(refs[(model, "validation")], schemas)
    required = set(query_schema.get("required", []))
    return [
        {"name": name, "in": "query", "required": name in required, "schema": prop}
        for name, prop in query_schema.get("properties", {}).items()
    ]


def _handshake(
    socket: WebSocket, refs: dict[Any, Any], schemas: dict[str, Any], error_ref: dict[str, Any]
) -> dict[str, Any]:
    error = {"content": {"application/json": {"schema": error_ref}}}
    responses: dict[str, Any] = {"101": {"description": "Switching Protocols: connected"}}
    for code in sorted({422, *socket.errors}):
        responses[str(code)] = {"description": _ERROR_TEXT.get(code, "Error"), **error}
    return {
        "operationId": socket.operation_id,
        "summary": socket.summary,
        "description": socket.description,
        "tags": list(socket.tags),
        "parameters": _query_parameters(socket.query, refs, schemas),
        "responses": responses,
    }
