"""The public catalog: the enabled pipelines and what each costs, as `GET /pipelines` lists
them, served from the configuration cache (24 h).

The database is read only on a miss, and imported only then: a hit is the whole cold start
of `GET /pipelines`. Saving a definition (`app.pipeline.store`) drops the cached list after
its commit, so the change shows at once.
"""

from __future__ import annotations

from typing import Any

from app import cache
from app.db import pages

LIST_CACHE_KEY = "config:pipelines"
CONFIG_TTL_S = 24 * 3600


def public_list() -> list[dict[str, Any]]:
    """The enabled pipelines, `{"id", "name", "description", "cost"}` each, by id."""
    items = cache.get_or_set(LIST_CACHE_KEY, _load_public, CONFIG_TTL_S)
    return items or []


def public_page(*, limit: int, cursor: str | None) -> pages.Page[dict[str, Any]]:
    """One page of `public_list`, by id."""
    return pages.ascending(public_list(), cursor=cursor, limit=limit)


def forget_public_list() -> None:
    cache.invalidate(LIST_CACHE_KEY)


def _load_public() -> list[dict[str, Any]]:
    from sqlalchemy import select  # cold start: the database only on a cache miss

    from app.db.tables import pipelines  # cold start: the database only on a cache miss
    from app.db.transaction import transaction  # cold start: the database only on a miss

    with transaction() as tx:
        rows = tx.execute(
            select(pipelines.c.id, pipelines.c.name, pipelines.c.description, pipelines.c.cost)
            .where(pipelines.c.enabled.is_(True))
            .order_by(pipelines.c.id)
        ).mappings()
        return [dict(row) for row in rows]
