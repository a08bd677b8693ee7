"""The auth levels a route declares, enforced before the handler runs."""

from __future__ import annotations

from typing import Any

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


def authenticate(request: Request[Any, Any], level: Auth) -> Principal | None:
    if level in (Auth.PUBLIC, Auth.SIGNATURE):
        return None
    from app.identity.tokens import principal_from_access  # cold start: public routes skip JWT

    principal = principal_from_access(bearer_token(request))
    if level is Auth.ADMIN and not principal.is_admin:
        raise AppError(ErrorCode.FORBIDDEN)
    return principal
