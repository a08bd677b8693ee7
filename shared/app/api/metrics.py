"""GET /metrics: this process's Prometheus registry in the text format, for the bearer of
METRICS_TOKEN when it is set."""

from __future__ import annotations

import sys

from app.http import Auth, Request, Response, Router
from app.observability import exposition

router = Router(tags=("system",))


def _refresh_pool_gauges() -> None:
    # Between the pool monitor's 30 s ticks (and on instances that never run it) the gauges
    # would be stale: read the pool now, if this process has opened one. Checking
    # sys.modules keeps SQLAlchemy out of the metrics function's own cold start.
    engine_module = sys.modules.get("app.db.engine")
    if engine_module is None or not engine_module.get_engine.cache_info().currsize:
        return
    from app.db.pool import publish_stats  # cold start: only once this process has an engine

    publish_stats(engine_module.get_engine())


@router.get(
    "/metrics",
    auth=Auth.METRICS,
    content_type=exposition.CONTENT_TYPE,
    summary="Prometheus metrics",
)
def get_metrics(req: Request[None, None]) -> Response:
    _refresh_pool_gauges()
    return Response(200, exposition.latest(), {}, exposition.CONTENT_TYPE)
