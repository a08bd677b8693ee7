"""Health checks of the dependencies an instance needs: the database and Redis."""

from __future__ import annotations

from app.errors import AppError
from app.redis_client import get_redis


def _check_db() -> str:
    from sqlalchemy import text  # cold start: the database layer loads with the first check

    from app.db.transaction import transaction  # cold start: as above

    try:
        with transaction() as tx:
            tx.execute(text("SELECT 1"))
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
