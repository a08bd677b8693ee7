"""GET /health: the database and Redis, each checked; 503 naming the failing one."""

from __future__ import annotations

from typing import Any

from app import health
from app.api.schemas.health import HealthOut
from app.http import Auth, Request, Response, Router

router = Router(tags=("system",))


@router.get(
    "/health",
    auth=Auth.PUBLIC,
    response=HealthOut,
    errors=(503,),
    summary="Check the database and Redis",
)
def get_health(req: Request[None, None]) -> Any:
    checks = health.check()
    ok = all(value == "ok" for value in checks.values())
    body = HealthOut(status="ok" if ok else "degraded", checks=checks)
    return body if ok else Response.json(body.model_dump(), status=503)
