"""Idempotency keys: the first answer to a keyed request, kept 24 h per user and scope.

A keyed request first asks `lookup`: a stored answer is replayed (or the body differs:
409) before the request itself is judged. Otherwise `claim` inserts the key inside the
transaction that does the work, and `record` stores the answer in that same transaction,
so a key exists exactly when its work committed. A concurrent duplicate's insert waits on
the unique key until the first commits, then inserts nothing: `KeyTaken`, and the caller
replays with `lookup`. When the first transaction rolls back
(an error answer), nothing is kept and a retry with the key does the work afresh; only
answers that changed something are replayed.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import and_, delete, select, tuple_, update

from app.clock import utcnow
from app.db.statements import ignoring_duplicates
from app.db.tables import idempotency_keys
from app.db.transaction import Transaction, transaction
from app.errors import AppError, ErrorCode

TTL = timedelta(hours=24)


class KeyTaken(Exception):
    """Another request with this key committed first (or is about to)."""


@dataclass(frozen=True)
class Replay:
    """What the first request with the key produced (its resource, as the API showed it)."""

    response: Any


def request_hash(body: Any) -> str:
    """The same JSON document gives the same hash whatever its key order or spacing."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _where(user_id: str, scope: str, key: str) -> Any:
    c = idempotency_keys.c
    return and_(c.user_id == user_id, c.scope == scope, c.key == key)


def claim(conn: Transaction, user_id: str, scope: str, key: str, digest: str) -> None:
    """Insert the key, or raise `KeyTaken` when a committed row holds it. No savepoint: a
    duplicate that deadlocks while waiting has had its whole transaction rolled back, and
    the lock conflict must reach the caller as it is (retry from the top), not as a failed
    `ROLLBACK TO SAVEPOINT`."""
    now = utcnow()
    inserted = conn.execute(
        ignoring_duplicates(idempotency_keys.insert()).values(
            user_id=user_id,
            scope=scope,
            key=key,
            request_hash=digest,
            response={},
            created_at=now,
            expires_at=now + TTL,
        )
    ).rowcount
    if not inserted:
        raise KeyTaken(key)


def record(
    conn: Transaction,
    user_id: str,
    scope: str,
    key: str,
    response: Any,
    resource_id: str | None = None,
) -> None:
    conn.execute(
        update(idempotency_keys)
        .where(_where(user_id, scope, key))
        .values(response=response, resource_id=resource_id)
    )


def lookup(user_id: str, scope: str, key: str, digest: str) -> Replay | None:
    """The stored answer; None when the key expired (it is removed, so claim again).
    A different body under the same key is `409 IDEMPOTENCY_KEY_MISMATCH`."""
    with transaction() as conn:
        row = conn.execute(select(idempotency_keys).where(_where(user_id, scope, key))).first()
        if row is None:
            return None
        if row.expires_at <= utcnow():
            conn.execute(
                delete(idempotency_keys).where(
                    _where(user_id, scope, key), idempotency_keys.c.expires_at <= utcnow()
                )
            )
            return None
        if row.request_hash != digest:
            raise AppError(
                ErrorCode.IDEMPOTENCY_KEY_MISMATCH,
                "This Idempotency-Key was used with a different request body.",
            )
        return Replay(row.response)


def purge_expired(limit: int = 1000) -> int:
    """Remove up to `limit` expired keys, in one DELETE."""
    c = idempotency_keys.c
    row_key = tuple_(c.user_id, c.scope, c.key)
    with transaction() as conn:
        keys = conn.execute(
            select(c.user_id, c.scope, c.key).where(c.expires_at <= utcnow()).limit(limit)
        ).all()
        if keys:
            conn.execute(delete(idempotency_keys).where(row_key.in_([tuple(k) for k in keys])))
        return len(keys)
