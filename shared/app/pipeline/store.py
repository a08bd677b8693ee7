"""Pipeline definitions as stored: an admin's save (validated by the route's
`PipelineDefinition`) and the read that starts a task. The read is never cached: a task is
charged the cost it reads, so it must be the definition as it stood when the request was
judged (read just before the request's upload checks, `app.tasks.service`), never one a
cache kept."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from app.audit import Actor, trail
from app.clock import iso, utcnow
from app.config.variables import platform_secrets
from app.db.tables import pipelines
from app.db.transaction import Transaction, transaction
from app.errors import AppError, ErrorCode
from app.pipeline import catalog
from app.pipeline.definition import PipelineDefinition
from app.vault import store as vault_store


def save(
    pipeline_id: str, definition: PipelineDefinition, *, actor: Actor | None
) -> dict[str, Any]:
    """Create or replace; the cached public list is dropped after the commit. A header that
    names a secret nobody stored, or one stored under a setting's name (JWT_SECRET, the
    payment keys: the platform's own) or named by a setting, is `422 VALIDATION_ERROR`. An
    admin's save (`actor`; None for a seed) is recorded in the same transaction: created or
    replaced, the cost, whether enabled, and a hash of the definition (app.audit)."""
    named = definition.secret_names()
    # The secrets stored under a setting's name (`make -s secret-put NAME=JWT_SECRET`, as the
    # README shows for the payment keys), or named by one (`JWT_SECRET=secret:JWT_SECRET_2027`)
    # are the platform's own: no upstream is sent one.
    platforms = platform_secrets()
    refused = [
        {"loc": ["body", "steps"], "msg": f"{name} is a setting's secret, never sent upstream"}
        for name in sorted(named & platforms)
    ]
    refused += [
        {"loc": ["body", "steps"], "msg": f"no secret is stored as {name}"}
        for name in sorted(vault_store.missing(named - platforms))
    ]
    if refused:
        raise AppError(ErrorCode.VALIDATION_ERROR, details=refused)
    values = definition.model_dump(mode="json")
    now = utcnow()
    with transaction() as tx:
        created = False
        changed = tx.execute(
            update(pipelines).where(pipelines.c.id == pipeline_id).values(**values, updated_at=now)
        ).rowcount
        if not changed:
            try:
                with tx.savepoint():
                    tx.execute(
                        pipelines.insert().values(
                            id=pipeline_id, **values, created_at=now, updated_at=now
                        )
                    )
                created = True
            except IntegrityError:  # created by a concurrent PUT: ours is the later write
                tx.execute(
                    update(pipelines)
                    .where(pipelines.c.id == pipeline_id)
                    .values(**values, updated_at=now)
                )
        if actor is not None:
            trail.record(tx, actor, "pipeline.put", pipeline_id, _saved(values, created))
        row = _load(tx, pipeline_id)
        tx.after_commit(catalog.forget_public_list, pipeline_id=pipeline_id)
    assert row is not None
    return row


def _saved(values: dict[str, Any], created: bool) -> dict[str, Any]:
    """What the trail keeps of a save: the definition's hash stands for its steps, which may
    be large (a later save's hash tells whether they changed)."""
    canonical = json.dumps(values, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return {
        "created": created,
        "cost": values["cost"],
        "enabled": values["enabled"],
        "sha256": hashlib.sha256(canonical.encode()).hexdigest(),
    }


def _load(tx: Transaction, pipeline_id: str) -> dict[str, Any] | None:
    row = tx.execute(select(pipelines).where(pipelines.c.id == pipeline_id)).mappings().first()
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


def get_enabled(tx: Transaction, pipeline_id: str) -> dict[str, Any] | None:
    """The pipeline a new task would run, or None when it is unknown or disabled."""
    row = _load(tx, pipeline_id)
    return row if row is not None and row["enabled"] else None
