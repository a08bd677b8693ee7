"""The pipeline catalog: definitions admins save, and the list clients read.

`save` validates nothing itself (the route's `PipelineDefinition` did) and invalidates the
configuration cache, so `GET /pipelines` shows the change at once. `public_list` is served
from that cache (24 h). `get_enabled` reads the database: the task it starts is charged the
cost it reads, so it must never be a stale one.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from app.clock import iso, utcnow
from app.db.tables import pipelines
from app.db.transaction import Transaction, transaction
from app.pipeline.definition import PipelineDefinition

LIST_CACHE_KEY = "config:pipelines"
CONFIG_TTL_S = 24 * 3600


def save(pipeline_id: str, definition: PipelineDefinition) -> dict[str, Any]:
    values = definition.model_dump(mode="json")
    now = utcnow()
    with transaction() as conn:
        changed = conn.execute(
            update(pipelines).where(pipelines.c.id == pipeline_id).values(**values, updated_at=now)
        ).rowcount
        if not changed:
            try:
                with conn.savepoint():
                    conn.execute(
                        pipelines.insert().values(
                            id=pipeline_id, **values, created_at=now, updated_at=now
                        )
                    )
            except IntegrityError:  # created by a concurrent PUT: ours is the later write
                conn.execute(
                    update(pipelines)
                    .where(pipelines.c.id == pipeline_id)
                    .values(**values, updated_at=now)
                )
        row = _load(conn, pipeline_id)
    from app import cache

    cache.invalidate(LIST_CACHE_KEY)
    assert row is not None
    return row


def _load(conn: Transaction, pipeline_id: str) -> dict[str, Any] | None:
    row = conn.execute(select(pipelines).where(pipelines.c.id == pipeline_id)).mappings().first()
    if row is None:
        return None
    return {
        "id": row["id"],
        "name": row["name"],
        "description": row["description"],
        "cost": row["cost"],
        "enabled": bool(row["enabled"]),
        "steps": row["steps"],
        "created_at": iso(row["created_at"]),
        "updated_at": iso(row["updated_at"]),
    }


def get_enabled(conn: Transaction, pipeline_id: str) -> dict[str, Any] | None:
    """The pipeline a new task would run, or None when it is unknown or disabled."""
    row = _load(conn, pipeline_id)
    return row if row is not None and row["enabled"] else None


def _load_public() -> list[dict[str, Any]]:
    with transaction() as conn:
        rows = conn.execute(
            select(pipelines.c.id, pipelines.c.name, pipelines.c.description, pipelines.c.cost)
            .where(pipelines.c.enabled.is_(True))
            .order_by(pipelines.c.id)
        ).mappings()
        return [dict(row) for row in rows]


def public_list() -> list[dict[str, Any]]:
    from app import cache

    items = cache.get_or_set(LIST_CACHE_KEY, _load_public, CONFIG_TTL_S)
    return items or []
