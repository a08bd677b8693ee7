"""Plans: what a membership is sold as. An admin's save (`PUT /admin/plans/{id}`), the
public list (`GET /plans`, from the configuration cache, dropped after a save commits), and
the read a purchase prices itself with (never cached: an order must not be charged a stale
price).

A disabled plan is absent from the list and cannot be bought; orders already made keep
what they were sold (each order copies price, duration and quota).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from app import cache
from app.db import pages

if TYPE_CHECKING:
    from app.audit import Actor
    from app.db.transaction import Transaction

LIST_CACHE_KEY = "config:plans"
CONFIG_TTL_S = 24 * 3600
PLAN_ID = r"^[a-z0-9][a-z0-9_-]{0,63}$"


@dataclass(frozen=True)
class PlanFields:
    """What an admin sets; validated by the route's model."""

    name: str
    price_fen: int
    duration_days: int
    quota: int
    enabled: bool


@dataclass(frozen=True)
class Plan:
    id: str
    name: str
    price_fen: int
    duration_days: int
    quota: int
    enabled: bool
    updated_at: str


def public_list() -> list[dict[str, Any]]:
    """The enabled plans, `{"id", "name", "price_fen", "duration_days", "quota"}`, cheapest
    first."""
    return cache.get_or_set(LIST_CACHE_KEY, _load_public, CONFIG_TTL_S) or []


def public_page(*, limit: int, cursor: str | None) -> pages.Page[dict[str, Any]]:
    """One page of `public_list`: cheapest first, plans of one price by id."""
    return pages.ascending(public_list(), by=("price_fen",), cursor=cursor, limit=limit)


def save(plan_id: str, fields: PlanFields, *, actor: Actor | None) -> Plan:
    """Create or replace; the cached list is dropped after the commit. An admin's save
    (`actor`; None for a seed) is recorded in the same transaction: created or replaced, and
    the fields it set (app.audit)."""
    from sqlalchemy import update  # cold start: the database only for an admin's save
    from sqlalchemy.exc import IntegrityError  # cold start: as above

    from app.audit import trail  # cold start: as above
    from app.clock import utcnow  # cold start: as above
    from app.db.tables import plans  # cold start: as above
    from app.db.transaction import transaction  # cold start: as above

    values = {
        "name": fields.name,
        "price_fen": fields.price_fen,
        "duration_days": fields.duration_days,
        "quota": fields.quota,
        "enabled": fields.enabled,
    }
    now = utcnow()
    with transaction() as tx:
        where = plans.c.id == plan_id
        created = False
        if not tx.execute(update(plans).where(where).values(**values, updated_at=now)).rowcount:
            try:
                with tx.savepoint():
                    tx.execute(
                        plans.insert().values(id=plan_id, **values, created_at=now, updated_at=now)
                    )
                created = True
            except IntegrityError:  # created by a concurrent PUT: ours is the later write
                tx.execute(update(plans).where(where).values(**values, updated_at=now))
        if actor is not None:
            trail.record(tx, actor, "plan.put", plan_id, {"created": created, **values})
        plan = get(tx, plan_id)
        tx.after_commit(forget_public_list, plan_id=plan_id)
    assert plan is not None
    return plan


def get(tx: Transaction, plan_id: str) -> Plan | None:
    from sqlalchemy import select  # cold start: the database only where it is read

    from app.clock import iso  # cold start: as above
    from app.db.tables import plans  # cold start: as above

    row = tx.execute(select(plans).where(plans.c.id == plan_id)).mappings().first()
    if row is None:
        return None
    return Plan(
        id=row["id"],
        name=row["name"],
        price_fen=int(row["price_fen"]),
        duration_days=int(row["duration_days"]),
        quota=int(row["quota"]),
        enabled=bool(row["enabled"]),
        updated_at=iso(row["updated_at"]) or "",
    )


def forget_public_list() -> None:
    cache.invalidate(LIST_CACHE_KEY)


def _load_public() -> list[dict[str, Any]]:
    from sqlalchemy import select  # cold start: the database only on a cache miss

    from app.db.tables import plans  # cold start: the database only on a cache miss
    from app.db.transaction import transaction  # cold start: the database only on a miss

    c = plans.c
    with transaction() as tx:
        rows = tx.execute(
            select(c.id, c.name, c.price_fen, c.duration_days, c.quota)
            .where(c.enabled.is_(True))
            .order_by(c.price_fen, c.id)
        ).mappings()
        return [dict(row) for row in rows]
