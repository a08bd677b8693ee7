"""Audit trail test support: an actor for domain verbs called without a request, and the
rows recorded for a target."""

from __future__ import annotations

import secrets
from typing import Any

from sqlalchemy import select

from app.audit import Actor
from app.db.tables import admin_actions
from app.db.transaction import transaction
from app.ids import new_id


def an_actor(user_id: str | None = None) -> Actor:
    """An admin acting outside any request (its id need not be a user's: the trail keeps
    who acted, whatever became of them)."""
    return Actor(user_id=user_id or new_id(), request_id=secrets.token_hex(16))


def actions_on(target: str) -> list[dict[str, Any]]:
    """The rows recorded for `target`, oldest first."""
    query = select(admin_actions).where(admin_actions.c.target == target)
    with transaction() as tx:
        rows = [dict(row) for row in tx.execute(query.order_by(admin_actions.c.at)).mappings()]
    return rows
