"""Idempotency keys: the first answer to a keyed request, kept 24 h per user and scope.

A keyed request first asks `lookup`: a stored answer is replayed (or the body differs:
409) before the request itself is judged. Otherwise `claim` inserts the key inside the
transaction that does the work, and `record` stores the answer in that same transaction,
so a key exists exactly when its work committed. A concurrent duplicate's insert waits on
the unique key until the first commits, then inserts nothing: `KeyTaken`, and the caller
replays with `lookup`. When the first transaction rolls back
(an error answer), nothing is kept and a retry with the key does the work afresh; only
answers that changed something are replayed. A create counted against a rate limit before
its claim counts through `take_hourly`, so a duplicate of one still in flight gets its
answer past the limit too.

A transaction that ends in a lock conflict (`app.db.conflicts`) is run again alone, by
`retry_conflicts` where it is run: the create's write (`keyed_write`: waiters on one key
deadlock when its first holder rolls back), `lookup`'s removal of an expired key (it waits
on a duplicate that claimed the key afresh), `take_hourly`'s wait for the first. What came
before the write (the count, the HEADs, the provider's trade) is done once, and no loop
round them tries a conflict again: one place retries each. The create's write keeps its
key claimed across the tries of what follows the claim (`keyed_write`), so a duplicate
never finds the key free between two tries of its first.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from typing import Any, TypeVar

from sqlalchemy import and_, delete, select, tuple_, update

from app import counters
from app.clock import utcnow
from app.db.conflicts import Tries, retry_conflicts, statement_timed_out
from app.db.statements import ignoring_duplicates
from app.db.tables import idempotency_keys
from app.db.transaction import Transaction, transaction
from app.errors import AppError, ErrorCode

T = TypeVar("T")
TTL = timedelta(hours=24)
# A keyed create goes round this many times at most (a key taken meanwhile).
ATTEMPTS = 5


class KeyTaken(Exception):
    """Another request with this key committed first (or is about to)."""


@dataclass(frozen=True)
class Replay:
    """What the first request with the key produced (its resource, as the API showed it)."""

    response: Any


@dataclass(frozen=True)
class Answered:
    """What a keyed create answers: the resource it made, or for a known key the one its
    first request made (`replayed`)."""

    response: Any
    replayed: bool


def create_once(
    user_id: str, scope: str, key: str | None, digest: str, create: Callable[[], Any]
) -> Answered:
    """Run `create()` (which claims and records the key in its own transaction when `key`
    is given, and runs that transaction again itself on a lock conflict) unless a stored
    answer for the key replays first; a key another request committed meanwhile
    (`KeyTaken`) goes round again, from the lookup. `409 IDEMPOTENCY_KEY_MISMATCH` for the
    key with another body."""
    for _ in range(ATTEMPTS):
        if key is not None:
            # A known key is answered before the request is judged: its replay stands even
            # if what it names changed since, and another body is 409 whatever it says.
            replay = retry_conflicts(partial(lookup, user_id, scope, key, digest))
            if replay is not None:
                return Answered(replay.response, replayed=True)
        try:
            return Answered(create(), replayed=False)
        except KeyTaken:
            continue  # committed meanwhile: the lookup replays it (or it expired)
    raise AppError(ErrorCode.SERVICE_UNAVAILABLE)


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
    the lock conflict must reach the caller as it is (its transaction run again whole), not
    as a failed `ROLLBACK TO SAVEPOINT`."""
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


def keyed_write(
    user_id: str, scope: str, key: str | None, digest: str, write: Callable[[Transaction], T]
) -> T:
    """`write(tx)` (which records the key's answer) in one transaction that claims `key`
    first when one is given, run again on a lock conflict (`retry_conflicts`' tries, while
    another fits in the invocation); `KeyTaken` when the key's first request committed.

    The key stays claimed across the tries. A try that rolled back whole would free it for
    a moment, before the next try claimed it again, and a duplicate waiting on it would
    take it: within the limit it would do the work itself and its first replay it, but
    past the limit (`take_hourly`) it would answer `429` while the first's next try
    committed. So each try of `write` runs in a savepoint after the claim: a lock wait
    timeout (1205) rolls back its statement alone, the try is rolled back to the
    savepoint and run again in the same transaction, the key held all along (and the row
    locks the try took, which InnoDB keeps to the end: the next try takes the same rows).
    What the server rolls back whole, a deadlock (1213), takes the key with it, so a
    duplicate past the limit may still be refused then; the transaction is run again
    whole, claim first, as is a claim that itself timed out. Without a key there is
    nothing to hold, and no savepoint."""
    tries = Tries()

    def whole() -> T:
        with transaction() as tx:
            if key is None:
                return write(tx)
            claim(tx, user_id, scope, key, digest)
            while True:
                tries.begin()
                try:
                    with tx.savepoint():
                        return write(tx)
                except Exception as exc:
                    if not (statement_timed_out(exc) and tries.again(exc)):
                        raise

    return retry_conflicts(whole, tries=tries)


def take_hourly(
    counter: str,
    limit: int,
    message: str,
    *,
    user_id: str,
    scope: str,
    key: str | None,
    digest: str,
) -> None:
    """`counters.take_hourly` (RATE_LIMITED past `limit`) for a keyed create that counts
    before it claims its key. Past the limit, a request holding that key that commits
    meanwhile wins over the refusal: a duplicate sent while the first is still in flight
    waits for it, as it would within the limit (its claim blocks on the first's uncommitted
    key), and its `KeyTaken` sends `create_once` back to the lookup, which replays the
    first's answer. Nothing of the wait is kept: the claim rolls back with the refusal. A
    lock conflict in the wait (the first's write took longer than a lock wait) waits again,
    the count not asked again."""
    try:
        counters.take_hourly(counter, limit, ErrorCode.RATE_LIMITED, message)
    except AppError as refused:
        if key is None:
            raise
        retry_conflicts(partial(_refuse_after_the_first, refused, user_id, scope, key, digest))


def _refuse_after_the_first(
    refused: AppError, user_id: str, scope: str, key: str, digest: str
) -> None:
    """`refused`, once the claim of `key` has waited for a request holding it uncommitted
    (`KeyTaken` instead when that one committed)."""
    with transaction() as conn:
        claim(conn, user_id, scope, key, digest)
        raise refused


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
    """Remove up to `limit` expired keys, in one DELETE; how many it removed."""
    c = idempotency_keys.c
    row_key = tuple_(c.user_id, c.scope, c.key)
    now = utcnow()
    with transaction() as conn:
        keys = conn.execute(
            select(c.user_id, c.scope, c.key).where(c.expires_at <= now).limit(limit)
        ).all()
        if not keys:
            return 0
        # Expired still: a key read here may have been claimed afresh since (`lookup` drops
        # the expired row, the next request inserts a new one), and deleting that one would
        # let a retry of that request do its work, and charge, a second time.
        return conn.execute(
            delete(idempotency_keys).where(
                row_key.in_([tuple(k) for k in keys]), c.expires_at <= now
            )
        ).rowcount
