"""Invite codes: the pool of pre-generated codes, the claim a new user makes, the refill job.

A claim takes one unclaimed row with `FOR UPDATE SKIP LOCKED` (MariaDB 10.6+, MySQL 8), so
concurrent registrations each take a different code without waiting on one another. An
empty pool never fails a registration: the code is then generated inline.

A refill counts the pool, then inserts what is missing: two refills at once would both see
it short and both insert. So a refill is a run of the `invite-refill` job (app.db.runs): one
at a time, and one started while another is live is refused with RunBusy (503 to an admin).
"""

from __future__ import annotations

import logging
import secrets
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.exc import IntegrityError

from app.clock import utcnow
from app.config import get_settings
from app.db import runs
from app.db.tables import invite_codes
from app.db.transaction import Transaction, transaction
from app.observability import logging as applog

log = applog.get_logger("app.identity.invites")
JOB = "invite-refill"

# No 0/O, 1/I/L: codes are read aloud and typed from screenshots.
ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
CODE_LENGTH = 8
_REFILL_BATCH = 200


def new_code() -> str:
    return "".join(secrets.choice(ALPHABET) for _ in range(CODE_LENGTH))


def _insert_inline(conn: Transaction, user_id: str) -> str:
    # 31^8 codes: a collision is rare enough that a few tries always suffice; a savepoint
    # keeps a collision from aborting the caller's transaction.
    for _ in range(5):
        code = new_code()
        try:
            with conn.savepoint():
                conn.execute(
                    insert(invite_codes).values(
                        code=code, claimed_by=user_id, claimed_at=utcnow(), created_at=utcnow()
                    )
                )
            return code
        except IntegrityError:
            continue
    raise RuntimeError("could not generate a unique invite code")


def claim(conn: Transaction, user_id: str) -> str:
    """One code for `user_id`, in the caller's transaction (released if it rolls back)."""
    query = (
        select(invite_codes.c.code)
        .where(invite_codes.c.claimed_by.is_(None))
        .limit(1)
        .with_for_update(skip_locked=True)
    )
    code = conn.execute(query).scalar()
    if code is None:
        applog.log_fields(log, logging.INFO, "invite pool empty, code generated inline")
        return _insert_inline(conn, user_id)
    conn.execute(
        update(invite_codes)
        .where(invite_codes.c.code == code)
        .values(claimed_by=user_id, claimed_at=utcnow())
    )
    return str(code)


def available() -> int:
    with transaction() as conn:
        return int(
            conn.execute(
                select(func.count())
                .select_from(invite_codes)
                .where(invite_codes.c.claimed_by.is_(None))
            ).scalar_one()
        )


def refill(target: int | None = None) -> dict[str, Any]:
    """Top the pool of unclaimed codes up to `target` (INVITE_POOL_TARGET by default).
    RunBusy while another refill runs."""
    goal = get_settings().invite_pool_target if target is None else target
    run_id = runs.start(JOB).id
    try:
        created = _top_up(goal)
    except Exception as error:
        # The type only, as the timer's log line has the rest: a database error's text may
        # carry SQL and parameters.
        runs.finish(run_id, "failed", type(error).__name__)
        raise
    runs.finish(run_id, "ok")
    report = {"job": JOB, "created": created, "available": available()}
    applog.log_fields(log, logging.INFO, "invite refill", **report)
    return report


def _top_up(goal: int) -> int:
    """Codes inserted until `goal` are unclaimed; only while this run holds the job."""
    created = 0
    missing = goal - available()
    while missing > 0:
        batch = min(missing, _REFILL_BATCH)
        now = utcnow()
        codes = {new_code() for _ in range(batch)}
        try:
            with transaction() as conn:
                conn.execute(
                    insert(invite_codes),
                    [
                        {"code": c, "claimed_by": None, "claimed_at": None, "created_at": now}
                        for c in codes
                    ],
                )
        except IntegrityError:
            # A code already exists: rare; the next round draws new ones.
            applog.log_fields(log, logging.INFO, "invite refill batch collided, retrying")
            missing = goal - available()
            continue
        created += len(codes)
        missing -= len(codes)
    return created


def refill_job(*_args: Any, **_kwargs: Any) -> dict[str, Any]:
    """Entry for the timer and for `POST /admin/jobs/invite-refill`."""
    return refill()
