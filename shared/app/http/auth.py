"""The auth levels a route declares, enforced before the handler runs."""

from __future__ import annotations

import hmac
from typing import Any

from app.config import get_settings
from app.errors import AppError, ErrorCode
from app.http.request import Request
from app.http.routing import Auth
from app.identity.principal import Principal


def bearer_token(request: Request[Any, Any]) -> str:
    header: str | None = request.headers.get("authorization")
    if not header or not header.strip():
        raise AppError(ErrorCode.AUTH_REQUIRED)
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AppError(ErrorCode.AUTH_TOKEN_INVALID)
    return token.strip()


def _metrics_token(request: Request[Any, Any]) -> None:
    expected = get_settings().metrics_token.get_secret_value()
    if expected and not hmac.compare_digest(bearer_token(request).encode(), expected.encode()):
        raise AppError(ErrorCode.AUTH_TOKEN_INVALID)


def authenticate(request: Request[Any, Any], level: Auth) -> Principal | None:
    if level in (Auth.PUBLIC, Auth.SIGNATURE):
        return None
    if level is Auth.METRICS:
        _metrics_token(request)
        return None
    from app.identity.access import authorize  # cold start: public routes skip JWT

    principal = authorize(bearer_token(request))
    if level is Auth.ADMIN and not principal.is_admin:
        raise AppError(ErrorCode.FORBIDDEN)
    return principal
