"""Health checks of the dependencies an instance needs: the database and Redis."""

from __future__ import annotations

from sqlalchemy import text

from app.db.transaction import transaction
from app.errors import AppError
from app.redis_client import get_redis


def _check_db() -> str:
    try:
        with transaction() as conn:
            conn.execute(text("SELECT 1"))
        return "ok"
    except AppError as exc:
        return exc.message
    except Exception as exc:  # noqa: BLE001 - any failure is the answer
        return type(exc).__name__


def _check_redis() -> str:
    try:
        get_redis().ping()
        return "ok"
    except Exception as exc:  # noqa: BLE001
        return type(exc).__name__


def check() -> dict[str, str]:
    return {"db": _check_db(), "redis": _check_redis()}
