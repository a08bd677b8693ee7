"""The stored secrets (the `secrets` table) and their values.

A value is kept only as an envelope (`app.crypto`), sealed with a data key of its own and
the secret's name as context, so a row copied under another name does not open. Nothing
else ever holds it: not a response, a log line, an error message or a stored step (a step
keeps the `{{secrets.NAME}}` it was written with). The runner fills a step's headers at
call time (`fill`): one query reads the versions of the names it needs, and an envelope is
opened only when its version is new to this instance, so the next call after an update's
commit sends the new value, and KMS is asked once per value per instance.

Rotation (`rekey`, the `secrets-rekey` job, after KMS_KEY_ID names the new key): every row
not sealed under the current key is sealed again under it, one row per transaction, with a
new version so that instances open the new envelope at their next use; an old envelope
opens until then, since it names its own key, and once the job has run the old key may be
disabled.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.sql import Executable

from app.audit import Actor, trail
from app.clock import iso, utcnow
from app.config import get_settings
from app.config.variables import platform_secrets
from app.crypto import envelopes, providers
from app.crypto.errors import ProviderUnavailable
from app.db import pages
from app.db.tables import secrets
from app.db.transaction import Transaction, transaction
from app.errors import AppError, ErrorCode
from app.observability import logging as applog
from app.vault import MAX_VALUE_BYTES, NAME, REFERENCE, referenced

log = logging.getLogger(__name__)


class Unavailable(Exception):
    """A secret a step needs cannot be had (gone, or its envelope does not open). The
    message names the secret, never a value."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"secret {name} is not available: {reason}")
        self.name = name


@dataclass(frozen=True)
class Listed:
    name: str
    updated_at: str


def _keys() -> providers.DataKeys:
    return providers.from_settings(get_settings())


def _invalid(where: list[str], why: str) -> AppError:
    return AppError(ErrorCode.VALIDATION_ERROR, details=[{"loc": where, "msg": why}])


def put(name: str, value: str, *, actor: Actor) -> None:
    """Store `value` under `name` (created, or replaced with its version one higher);
    `422 VALIDATION_ERROR` for a name or a value out of bounds, `503 SERVICE_UNAVAILABLE`
    when it cannot be sealed now (KMS unreachable or refusing). Recorded as `actor`'s, with
    the name and the version it made, never the value or its envelope (app.audit)."""
    if not NAME.fullmatch(name):
        raise _invalid(["path", "name"], "A-Z first, then up to 63 of A-Z, 0-9 and _")
    try:
        plain = value.encode()
    except UnicodeEncodeError:  # a lone surrogate: no text a header could carry
        raise _invalid(["body", "value"], "not valid Unicode text") from None
    if not 1 <= len(plain) <= MAX_VALUE_BYTES:
        raise _invalid(["body", "value"], f"1 to {MAX_VALUE_BYTES} bytes of UTF-8")
    try:
        envelope = envelopes.seal(plain, name, _keys())
    except envelopes.EnvelopeError as error:  # KMS unreachable or refusing: nothing written
        applog.log_fields(log, logging.ERROR, "secret not stored", secret=name, reason=str(error))
        raise AppError(
            ErrorCode.SERVICE_UNAVAILABLE, "The secret could not be encrypted; try again shortly."
        ) from None
    for attempt in (1, 2):
        try:
            with transaction() as tx:
                version = write_row(tx, name, envelope)
                trail.record(tx, actor, "secret.put", name, {"version": version})
            return
        except IntegrityError:  # created by a concurrent PUT: ours is the later write
            if attempt == 2:
                raise


class Executes(Protocol):
    def execute(self, statement: Executable) -> Any: ...


def write_row(db: Executes, name: str, envelope: str) -> int:
    """Set the row of `name` to `envelope` inside the caller's transaction (`db`: ours, or a
    plain SQLAlchemy connection), its version one higher, or 1 for a new row; the version.
    IntegrityError when a concurrent first write of the name won: write again."""
    now = utcnow()
    key_id = envelopes.key_id_of(envelope)
    changed = db.execute(
        update(secrets)
        .where(secrets.c.name == name)
        .values(envelope=envelope, key_id=key_id, version=secrets.c.version + 1, updated_at=now)
    ).rowcount
    if not changed:
        db.execute(
            secrets.insert().values(
                name=name,
                envelope=envelope,
                key_id=key_id,
                version=1,
                created_at=now,
                updated_at=now,
            )
        )
    return int(db.execute(select(secrets.c.version).where(secrets.c.name == name)).scalar_one())


def listed(*, limit: int, cursor: str | None) -> pages.Page[Listed]:
    """Names and when each was last set, newest first: never a value."""
    query = pages.newest_first(
        select(secrets.c.name.label("id"), secrets.c.created_at, secrets.c.updated_at),
        secrets.c.created_at,
        secrets.c.name,
        cursor=cursor,
        limit=limit,
    )
    with transaction() as tx:
        rows = list(tx.execute(query).mappings())
    page, next_cursor = pages.split(rows, limit)
    return pages.Page([Listed(r["id"], str(iso(r["updated_at"]))) for r in page], next_cursor)


def missing(names: Iterable[str]) -> set[str]:
    """Those of `names` no secret is stored under."""
    wanted = set(names)
    if not wanted:
        return set()
    with transaction() as tx:
        found = {
            r.name for r in tx.execute(select(secrets.c.name).where(secrets.c.name.in_(wanted)))
        }
    return wanted - found


# -- values, for calls upstream -------------------------------------------------------

_lock = threading.Lock()
_opened: dict[str, tuple[int, str]] = {}  # name -> (version, value), this instance's


def values(names: Iterable[str]) -> dict[str, str]:
    """The current value of each name; `Unavailable` for one that cannot be had."""
    wanted = set(names)
    if not wanted:
        return {}
    # What this call read or opened itself: the instance's cache may meanwhile be set by a
    # call that began earlier, with an older version.
    current: dict[str, str] = {}
    with transaction() as tx:
        versions = {
            r.name: r.version
            for r in tx.execute(
                select(secrets.c.name, secrets.c.version).where(secrets.c.name.in_(wanted))
            )
        }
        for name in sorted(wanted):
            if name not in versions:
                raise Unavailable(name, "no such secret")
            with _lock:
                known = _opened.get(name)
            if known is not None and known[0] == versions[name]:
                current[name] = known[1]
            else:
                current[name] = _open(tx, name)
    return current


def _open(tx: Transaction, name: str) -> str:
    row = tx.execute(
        select(secrets.c.envelope, secrets.c.version).where(secrets.c.name == name)
    ).one()
    try:
        value = envelopes.open(row.envelope, name, _keys()).decode()
    except envelopes.EnvelopeError as error:
        raise Unavailable(name, str(error)) from None
    with _lock:
        _opened[name] = (row.version, value)
    return value


@dataclass(frozen=True)
class Filled:
    """Headers as they are sent, and the secret values filled into them: what the caller
    keeps out of anything it stores or shows (an upstream may answer with what it was
    sent)."""

    # Neither in a log line or a traceback's locals repr: both hold the values.
    headers: dict[str, str] = field(repr=False)
    secrets: dict[str, str] = field(repr=False)  # name -> value


def fill(headers: Mapping[str, str]) -> Filled:
    """`headers` with every `{{secrets.NAME}}` replaced by the secret's current value. A
    secret stored under a setting's name, or named by a setting (`secret:NAME`), is
    `Unavailable`: the platform's own, which a pipeline saved before saves refused it must
    not send either."""
    named = referenced(headers.values())
    platforms = sorted(named & platform_secrets())
    if platforms:
        raise Unavailable(platforms[0], "a setting's secret, never sent upstream")
    current = values(named)
    filled = {
        header: REFERENCE.sub(lambda found: current[found.group(1)], value)
        for header, value in headers.items()
    }
    return Filled(filled, current)


# -- rotation --------------------------------------------------------------------------


def rekey() -> dict[str, Any]:
    """Seal every secret not under the current key again under it; the counts. A row
    that does not open (its key disabled or gone) is left as it is, logged by name and
    counted as `unreadable`: the others still move, and the job can run again; one moved
    meanwhile (a PUT, another run) is passed over. When
    sealing under the current key fails (KMS unreachable, or refusing that key), or
    opening fails for want of KMS (unreachable, failing, refusing the credentials), every
    other row would fail alike: the job stops there, logs why, and counts that row and
    those not tried as `unsealed`, left as they are for the next run."""
    keys = _keys()
    with transaction() as tx:
        stale = [
            r.name
            for r in tx.execute(select(secrets.c.name).where(secrets.c.key_id != keys.key_id))
        ]
    rekeyed = unreadable = unsealed = 0
    for done, name in enumerate(stale):
        with transaction() as tx:
            row = tx.execute(
                select(secrets.c.envelope, secrets.c.key_id)
                .where(secrets.c.name == name)
                .with_for_update()
            ).one()
            if row.key_id == keys.key_id:
                # Moved while this run waited for the row (a PUT, or another run of the
                # job): sealing it again would only make every instance open it again.
                continue
            try:
                plain = envelopes.open(row.envelope, name, keys)
            except envelopes.EnvelopeError as error:
                applog.log_fields(
                    log, logging.ERROR, "secret not rekeyed", secret=name, reason=str(error)
                )
                if isinstance(error, ProviderUnavailable):  # no row would open: as below
                    unsealed = len(stale) - done
                    break
                unreadable += 1
                continue
            try:
                envelope = envelopes.seal(plain, name, keys)
            except envelopes.EnvelopeError as error:
                applog.log_fields(
                    log, logging.ERROR, "secret not rekeyed", secret=name, reason=str(error)
                )
                unsealed = len(stale) - done
                break
            # A new version, though the value is the same: every instance opens the new
            # envelope at its next use, so the old key can be retired once this has run.
            tx.execute(
                update(secrets)
                .where(secrets.c.name == name)
                .values(envelope=envelope, key_id=keys.key_id, version=secrets.c.version + 1)
            )
            rekeyed += 1
    return {"rekeyed": rekeyed, "unreadable": unreadable, "unsealed": unsealed}
