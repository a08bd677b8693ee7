"""The OpenAPI document and Swagger UI, served through their own functions."""

from __future__ import annotations

import re
from enum import Enum
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from openapi_spec_validator import validate
from pydantic import BaseModel, Field

from app.api import all_routes
from app.http import Auth, Request, Router
from app.http import openapi as openapi_builder
from app.http.models import Page
from tests.support.function_url import call
from tests.support.functions import handler


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    reply = call(handler("openapi"), "GET", "/openapi.json")
    assert reply.status == 200
    assert reply.header("Content-Type").startswith("application/json")
    return reply.json()  # type: ignore[no-any-return]


def refs_in(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        for value in node.values():
            found.extend(refs_in(value))
        return found
    if isinstance(node, list):
        return [ref for item in node for ref in refs_in(item)]
    return []


def assert_refs_resolve(doc: dict[str, Any]) -> None:
    schemas = doc["components"]["schemas"]
    for ref in refs_in(doc):
        assert ref.startswith("#/components/schemas/"), ref
        assert ref.rsplit("/", 1)[1] in schemas, f"dangling {ref}"


def test_the_served_document_is_what_the_route_table_gives_now() -> None:
    from app.api import docs

    assert docs.DOCUMENT.read_text(encoding="utf-8") == docs.render(docs.build_document()), (
        "shared/app/api/openapi.json is out of date: run `make openapi`"
    )


def test_the_served_document_is_valid_openapi(document: dict[str, Any]) -> None:
    assert document["openapi"].startswith("3.")
    validate(document)
    assert_refs_resolve(document)


def test_every_route_of_the_table_is_described_with_its_method(document: dict[str, Any]) -> None:
    routes = all_routes()
    described = {
        (method.upper(), path) for path, ops in document["paths"].items() for method in ops
    }
    # The `ws` function's handshake, outside the table: its own test below.
    assert {(r.method, r.path) for r in routes} | {("GET", "/ws")} == described
    for required in [("GET", "/openapi.json"), ("GET", "/docs"), ("GET", "/health")]:
        assert required in described


def test_the_websocket_is_described_as_its_handshake(document: dict[str, Any]) -> None:
    handshake = document["paths"]["/ws"]["get"]
    [token] = handshake["parameters"]
    assert (token["name"], token["in"], token["required"]) == ("token", "query", True)
    assert set(handshake["responses"]) == {"101", "401", "422", "429", "503"}
    error_ref = handshake["responses"]["401"]["content"]["application/json"]["schema"]["$ref"]
    assert error_ref.endswith("/ErrorBody")
    for words in ('"type": "task.updated"', '"type": "ack"', '"type": "ping"', "1012"):
        assert words in handshake["description"]


def test_secured_routes_declare_the_bearer_scheme(document: dict[str, Any]) -> None:
    assert document["components"]["securitySchemes"]["bearer"] == {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
    }
    for route in all_routes():
        op = document["paths"][route.path][route.method.lower()]
        if route.auth in (Auth.USER, Auth.ADMIN):
            assert op["security"] == [{"bearer": []}], route.path
            assert "401" in op["responses"]
        elif route.auth is Auth.METRICS:
            # METRICS_TOKEN, or nothing while it is unset.
            assert op["security"] == [{"metricsToken": []}, {}], route.path
            assert "401" in op["responses"]
        else:
            assert "security" not in op, route.path


# -- the generator, on routes of every kind ------------------------------------------


class Colour(str, Enum):
    red = "red"
    blue = "blue"


class WidgetIn(BaseModel):
    name: str = Field(min_length=1)
    colour: Colour


class WidgetOut(BaseModel):
    id: str
    colour: Colour


def _query_models() -> tuple[type[BaseModel], type[BaseModel]]:
    # Two route modules may each define a `ListQuery` with its own `Status` enum (task status,
    # order status): the document must keep them apart and every ref must resolve.
    def tasks_module() -> type[BaseModel]:
        class Status(str, Enum):
            queued = "queued"
            running = "running"

        class ListQuery(BaseModel):
            limit: int = Field(20, ge=1, le=100)
            status: Status | None = None

        return ListQuery

    def orders_module() -> type[BaseModel]:
        class Status(str, Enum):
            pending = "pending"
            paid = "paid"

        class ListQuery(BaseModel):
            status: Status | None = None
            tag: list[str] = []

        return ListQuery

    return tasks_module(), orders_module()


FirstQuery, SecondQuery = _query_models()
test_router = Router(tags=("widgets",))


@test_router.post(
    "/widgets", auth=Auth.USER, body=WidgetIn, response=WidgetOut, status=201, errors=(409,)
)
def create_widget(req: Request[WidgetIn, None]) -> WidgetOut:
    raise NotImplementedError


@test_router.get("/widgets", auth=Auth.PUBLIC, query=FirstQuery, response=Page[WidgetOut])
def list_widgets(req: Request[None, Any]) -> Any:
    raise NotImplementedError


@test_router.get("/admin/widgets/{widget_id}", auth=Auth.ADMIN, query=SecondQuery)
def admin_widget(req: Request[None, Any]) -> Any:
    raise NotImplementedError


@pytest.fixture(scope="module")
def widget_doc() -> dict[str, Any]:
    doc = openapi_builder.build(all_routes() + test_router.routes, title="widgets", version="0")
    validate(doc)
    assert_refs_resolve(doc)
    return doc


def test_body_response_and_errors_are_described(widget_doc: dict[str, Any]) -> None:
    op = widget_doc["paths"]["/widgets"]["post"]
    assert op["security"] == [{"bearer": []}]
    body_ref = op["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    assert widget_doc["components"]["schemas"][body_ref.rsplit("/", 1)[1]]["required"] == [
        "name",
        "colour",
    ]
    # 403: every token of a disabled user is ACCOUNT_DISABLED, on user routes as on admin ones.
    assert set(op["responses"]) == {"201", "401", "403", "409", "413", "422"}
    error_ref = op["responses"]["409"]["content"]["application/json"]["schema"]["$ref"]
    assert error_ref.endswith("/ErrorBody")


def test_admin_routes_document_403_and_path_parameters(widget_doc: dict[str, Any]) -> None:
    op = widget_doc["paths"]["/admin/widgets/{widget_id}"]["get"]
    assert {"401", "403", "422"} <= set(op["responses"])
    path_params = [p for p in op["parameters"] if p["in"] == "path"]
    assert path_params == [
        {"name": "widget_id", "in": "path", "required": True, "schema": {"type": "string"}}
    ]


def test_query_models_with_one_name_each_describe_their_own_fields(
    widget_doc: dict[str, Any],
) -> None:
    first = widget_doc["paths"]["/widgets"]["get"]["parameters"]
    second = widget_doc["paths"]["/admin/widgets/{widget_id}"]["get"]["parameters"]
    assert [p["name"] for p in first if p["in"] == "query"] == ["limit", "status"]
    assert [p["name"] for p in second if p["in"] == "query"] == ["status", "tag"]
    limit = next(p for p in first if p["name"] == "limit")["schema"]
    assert (limit["minimum"], limit["maximum"]) == (1, 100)

    def status_values(params: list[dict[str, Any]]) -> list[str]:
        schema = next(p for p in params if p["name"] == "status")["schema"]
        ref = next(alt["$ref"] for alt in schema["anyOf"] if "$ref" in alt)
        return widget_doc["components"]["schemas"][ref.rsplit("/", 1)[1]]["enum"]  # type: ignore[no-any-return]

    assert status_values(first) == ["queued", "running"]
    assert status_values(second) == ["pending", "paid"]


def test_a_body_is_required_only_where_its_model_has_required_fields(
    document: dict[str, Any],
) -> None:
    # A body left out is read as `{}`: fine for a patch or an empty body, a 422 otherwise.
    paths = document["paths"]
    assert paths["/tasks"]["post"]["requestBody"]["required"] is True
    assert paths["/auth/login"]["post"]["requestBody"]["required"] is True
    for path, method in [
        ("/users/me", "patch"),
        ("/admin/users/{id}", "patch"),
        ("/auth/logout", "post"),
        ("/auth/logout-all", "post"),
    ]:
        assert paths[path][method]["requestBody"]["required"] is False, path


def test_the_idempotency_key_header_is_described_where_it_is_honoured(
    document: dict[str, Any],
) -> None:
    from app.api import admin_quota, tasks

    def header(path: str, method: str) -> list[dict[str, Any]]:
        params = document["paths"][path][method]["parameters"]
        return [p for p in params if p["in"] == "header"]

    for path, longest in [
        ("/tasks", tasks.IDEMPOTENCY_KEY_MAX),
        ("/admin/users/{id}/quota", admin_quota.KEY_MAX),
    ]:
        assert header(path, "post") == [
            {
                "name": "Idempotency-Key",
                "in": "header",
                "required": False,
                "schema": {"type": "string", "minLength": 1, "maxLength": longest},
            }
        ]
    assert header("/tasks", "get") == []


def test_a_json_answer_without_a_model_is_described_as_an_object(
    document: dict[str, Any],
) -> None:
    ok = document["paths"]["/openapi.json"]["get"]["responses"]["200"]
    assert ok["content"] == {"application/json": {"schema": {"type": "object"}}}
    docs_page = document["paths"]["/docs"]["get"]["responses"]["200"]
    assert docs_page["content"] == {"text/html": {"schema": {"type": "string"}}}


def test_phones_passwords_and_avatars_are_described_as_the_validators_accept_them(
    document: dict[str, Any],
) -> None:
    from app.api.schemas.users import AVATAR_URL, PHONE_SPELLING

    schemas = document["components"]["schemas"]
    phone = schemas["RegisterIn"]["properties"]["phone"]
    password = schemas["RegisterIn"]["properties"]["password"]
    avatar = schemas["WechatLoginIn"]["properties"]["avatar"]["anyOf"][0]
    assert phone["pattern"] == PHONE_SPELLING
    assert (password["minLength"], password["maxLength"]) == (8, 72)
    assert (avatar["pattern"], avatar["maxLength"]) == (AVATAR_URL, 512)
    for spelling in ("13800138000", "+8613800138000"):
        assert re.fullmatch(PHONE_SPELLING, spelling)
    assert re.fullmatch(AVATAR_URL, "https://cdn.example/a.png")
    assert not re.fullmatch(AVATAR_URL, "https://cdn.example/a b.png")


def test_list_responses_use_the_page_envelope(widget_doc: dict[str, Any]) -> None:
    ok = widget_doc["paths"]["/widgets"]["get"]["responses"]["200"]
    ref = ok["content"]["application/json"]["schema"]["$ref"]
    page = widget_doc["components"]["schemas"][ref.rsplit("/", 1)[1]]
    assert set(page["properties"]) == {"items", "next_cursor"}


# -- Swagger UI ----------------------------------------------------------------------


class _Assets(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("src", "href") and value:
                self.urls.append(value)


def test_docs_page_loads_only_relative_assets() -> None:
    reply = call(handler("docs"), "GET", "/docs")
    assert reply.status == 200
    assert reply.header("Content-Type").startswith("text/html")
    parser = _Assets()
    parser.feed(reply.body)
    assert sorted(parser.urls) == ["docs/swagger-ui-bundle.js", "docs/swagger-ui.css"]
    # No absolute or protocol-relative URL anywhere in the page, scripts included.
    assert not re.search(r"(https?:)?//[a-z0-9]", reply.body, re.IGNORECASE)
    assert 'url: "openapi.json"' in reply.body


@pytest.mark.parametrize(
    ("asset", "content_type", "marker"),
    [
        ("swagger-ui-bundle.js", "application/javascript", "SwaggerUIBundle"),
        ("swagger-ui.css", "text/css", ".swagger-ui"),
    ],
)
def test_docs_assets_are_served_from_the_layer(asset: str, content_type: str, marker: str) -> None:
    reply = call(handler("docs"), "GET", f"/docs/{asset}")
    assert reply.status == 200
    assert reply.header("Content-Type").startswith(content_type)
    assert marker in reply.body
    assert len(reply.body) > 100_000
    assert reply.header("Cache-Control") == "public, max-age=86400"  # its own, kept


@pytest.mark.parametrize("asset", ["index.html", "..%2Fswagger-ui.css", "nope.js"])
def test_unknown_docs_asset_is_404(asset: str) -> None:
    reply = call(handler("docs"), "GET", f"/docs/{asset}")
    assert reply.status == 404
    assert reply.json()["code"] == "NOT_FOUND"


def test_the_bundled_swagger_ui_renders_the_document_version(document: dict[str, Any]) -> None:
    import swagger_ui_bundle

    # Swagger UI renders OpenAPI 3.1 from its 5.0 release on; 4.x refuses the document.
    version = Path(swagger_ui_bundle.swagger_ui_path).name.removeprefix("swagger-ui-")
    major = int(version.split(".")[0])
    if document["openapi"].startswith("3.1"):
        assert major >= 5, f"Swagger UI {version} cannot render OpenAPI {document['openapi']}"
