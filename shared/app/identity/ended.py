"""Sessions that have ended, as the database keeps them (`ended_sessions`): the answer to
"has this session ended?" while Redis, which holds the live sessions, cannot give one
(`app.identity.access`). A row is written after Redis has ended the session
(`app.identity.sessions`) and kept while the session's access tokens could still be
presented, then purged by the saga sweeper's housekeeping.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import delete, select

from app.clock import utcnow
from app.config import get_settings
from app.db.statements import ignoring_duplicates
from app.db.tables import ended_sessions
from app.db.transaction import Transaction, transaction

# An access token is taken until `exp`, checked on the clock of whoever reads it.
CLOCK_SKEW_S = 60


def record(user_id: str, sids: list[str]) -> None:
    """Keep these sessions of the user as ended."""
    if not sids:
        return
    now = utcnow()
    with transaction() as tx:
        tx.execute(
            ignoring_duplicates(ended_sessions.insert()),
            [{"sid": sid, "user_id": user_id, "ended_at": now} for sid in sids],
        )


def holds(tx: Transaction, sid: str) -> bool:
    """Whether the database holds the session as ended: the answer while Redis cannot give
    one. A session unknown there is live, as its access token is still valid."""
    found = tx.execute(select(ended_sessions.c.sid).where(ended_sessions.c.sid == sid)).first()
    return found is not None


def purge(limit: int = 1000) -> int:
    """Forget up to `limit` ended sessions whose access tokens have all expired."""
    cutoff = utcnow() - timedelta(seconds=get_settings().access_token_ttl_s + CLOCK_SKEW_S)
    c = ended_sessions.c
    with transaction() as tx:
        sids = [r.sid for r in tx.execute(select(c.sid).where(c.ended_at < cutoff).limit(limit))]
        if sids:
            tx.execute(delete(ended_sessions).where(c.sid.in_(sids)))
    return len(sids)
