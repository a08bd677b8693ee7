"""Writing the audit trail: one `admin_actions` row per admin action (see `app.audit`)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from app.audit import Actor
from app.clock import iso, utcnow
from app.db.tables import admin_actions
from app.db.transaction import Transaction, transaction
from app.ids import new_id
from app.observability import logging as applog

log = applog.get_logger("app.audit")

# admin_actions.request_id; a platform's id is a UUID, and a longer one must not cost the
# admin their change.
REQUEST_ID_MAX = 64


def entry(actor: Actor, action: str, target: str, changes: Mapping[str, Any]) -> dict[str, Any]:
    """The `admin_actions` row of one action, not yet written."""
    return {
        "id": new_id(),
        "at": utcnow(),
        "actor_id": actor.user_id,
        "action": action,
        "target": target,
        "changes": dict(changes),
        "request_id": actor.request_id[:REQUEST_ID_MAX],
    }


def record(
    tx: Transaction, actor: Actor, action: str, target: str, changes: Mapping[str, Any]
) -> str:
    """Record `action` on `target` inside the caller's transaction, which holds the change:
    the row commits with it or is rolled back with it. Its log line follows the commit.
    `changes` is small JSON: what the action changed, never a secret's value. The row's id."""
    row = entry(actor, action, target, changes)
    tx.execute(admin_actions.insert().values(**row))
    line = dict(row, at=iso(row["at"]))
    line["action_id"] = line.pop("id")
    tx.after_commit(
        lambda: applog.log_fields(log, logging.INFO, "admin action", **line),
        action_id=row["id"],
    )
    return str(row["id"])


def recorded(actor: Actor, action: str, target: str, changes: Mapping[str, Any]) -> str:
    """`record` in a transaction of its own: for an action whose change is not one
    transaction (a job's run), recorded once it is done."""
    with transaction() as tx:
        return record(tx, actor, action, target, changes)
