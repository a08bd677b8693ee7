"""GET /openapi.json and GET /docs: the OpenAPI document and Swagger UI, served from the
layer (swagger-ui-bundle's files), so the docs work with no network.

The document is built from the route table and its pydantic models, with the `ws`
function's handshake beside them (`build_document`), and kept in the layer as
`openapi.json`, written by `make openapi`; a test fails while the file
differs from what the route table gives, so it cannot drift. Serving the file means the
`openapi` function never loads the route modules and the services behind them.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from app.errors import AppError, ErrorCode
from app.http import Auth, Request, Response, Router

router = Router(tags=("system",))
TITLE = "AI content platform API"
VERSION = "1.0.0"

_ASSETS = {
    "swagger-ui.css": "text/css; charset=utf-8",
    "swagger-ui-bundle.js": "application/javascript; charset=utf-8",
}

# Asset and document URLs are relative so the page works under an API Gateway stage prefix;
# validatorUrl is null because Swagger UI would otherwise fetch a badge from an outside host.
_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title}</title>
<link rel="stylesheet" href="docs/swagger-ui.css">
</head>
<body>
<div id="swagger-ui"></div>
<script src="docs/swagger-ui-bundle.js"></script>
<script>
window.ui = SwaggerUIBundle({{
  url: "openapi.json", dom_id: "#swagger-ui", deepLinking: true, validatorUrl: null
}});
</script>
</body>
</html>
"""


DOCUMENT = Path(__file__).with_name("openapi.json")


def build_document() -> dict[str, Any]:
    """The document as the route table gives it now (`make openapi` writes it to DOCUMENT)."""
    from app.api import all_routes  # cold start: every route module, for the build only
    from app.api.schemas.realtime import WEBSOCKET  # cold start: the ws function's modules
    from app.http import openapi  # cold start: pydantic's schema generation, likewise

    return openapi.build(all_routes(), title=TITLE, version=VERSION, websockets=[WEBSOCKET])


def render(document: dict[str, Any]) -> str:
    """The document as DOCUMENT holds it: indented and key-sorted, so a change reads well in
    a diff."""
    return json.dumps(document, ensure_ascii=False, indent=2, sort_keys=True) + "\n"


@functools.lru_cache(maxsize=1)
def _served() -> bytes:
    return DOCUMENT.read_bytes()


@router.get(
    "/openapi.json",
    auth=Auth.PUBLIC,
    content_type="application/json",
    summary="This OpenAPI document",
)
def get_openapi(req: Request[None, None]) -> Response:
    return Response(200, _served(), {}, "application/json; charset=utf-8")


@router.get("/docs", auth=Auth.PUBLIC, content_type="text/html", summary="Swagger UI")
def get_docs(req: Request[None, None]) -> Response:
    return Response(200, _PAGE.format(title=TITLE), {}, "text/html; charset=utf-8")


def _asset_dir() -> Path:
    import swagger_ui_bundle  # cold start: only asset requests read Swagger UI's files

    return Path(swagger_ui_bundle.swagger_ui_path)


@router.get(
    "/docs/{asset}",
    auth=Auth.PUBLIC,
    content_type="text/plain",
    errors=(404,),
    summary="Swagger UI files",
)
def get_docs_asset(req: Request[None, None]) -> Response:
    name = req.path_params["asset"]
    if name not in _ASSETS:
        raise AppError(ErrorCode.NOT_FOUND)
    body = (_asset_dir() / name).read_bytes()
    headers = {"Cache-Control": "public, max-age=86400"}
    return Response(200, body, headers, _ASSETS[name])


if __name__ == "__main__":  # `make openapi`
    DOCUMENT.write_text(render(build_document()), encoding="utf-8")
    print(f"wrote {DOCUMENT}")
