"""GET /metrics: this process's Prometheus registry in the text format."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from app.http import Auth, Request, Response, Router

router = Router(tags=("system",))


@router.get(
    "/metrics", auth=Auth.PUBLIC, content_type=CONTENT_TYPE_LATEST, summary="Prometheus metrics"
)
def get_metrics(req: Request[None, None]) -> Response:
    return Response(200, generate_latest(), {}, CONTENT_TYPE_LATEST)
