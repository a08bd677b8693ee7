"""The values of variables that hold an envelope or a reference, for app.config, once per
instance and before anything serves.

- `enc:v1:...` is opened with the variable's name as its context: an envelope made for
  another variable does not open.
- `secret:NAME` is the `secrets` row NAME, read through DATABASE_URL (resolved first if it
  is itself an envelope) on a connection of its own, closed at once; its `envelope` column
  is opened with NAME as the context. DATABASE_URL itself cannot be a reference.

All or nothing: every variable that does not resolve is named, with the reason, in one
`Unresolved`; no value, data key or connection string is ever part of it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from app.crypto import ENVELOPE_MARK, REFERENCE_MARK, envelopes
from app.crypto.errors import EnvelopeError
from app.crypto.providers import CryptoSettings, DataKeys, from_settings

DATABASE_VARIABLE = "DATABASE_URL"
# A stored secret's name (the same rule as PUT /admin/secrets/{name}).
SECRET_NAME = re.compile(r"[A-Z][A-Z0-9_]{0,63}")
READ_SECRET = "SELECT envelope FROM secrets WHERE name = :name"  # noqa: S105 - a query
CONNECT_TIMEOUT_S = 5


class Unresolved(ValueError):
    def __init__(self, problems: Mapping[str, str]) -> None:
        self.problems = dict(problems)  # variable -> why it does not resolve
        super().__init__("; ".join(f"{name}: {why}" for name, why in self.problems.items()))


def resolve(
    sealed: Mapping[str, str], settings: CryptoSettings, database_url: str
) -> dict[str, str]:
    """The value of each variable of `sealed` (name -> envelope or reference), or Unresolved.
    `database_url` is DATABASE_URL as configured: plain, or an envelope also in `sealed`."""
    keys = from_settings(settings)
    values: dict[str, str] = {}
    problems: dict[str, str] = {}
    references: dict[str, str] = {}
    for variable, value in sealed.items():
        if value.startswith(ENVELOPE_MARK):
            try:
                values[variable] = _text(envelopes.open(value, variable, keys))
            except EnvelopeError as error:
                problems[variable] = f"the envelope does not open: {error}"
        elif value.startswith(REFERENCE_MARK):
            name = value[len(REFERENCE_MARK) :]
            if variable == DATABASE_VARIABLE:
                problems[variable] = "cannot be a secret: reference (secrets are read through it)"
            elif not SECRET_NAME.fullmatch(name):
                problems[variable] = "a reference is secret:NAME, NAME as [A-Z][A-Z0-9_]{0,63}"
            else:
                references[variable] = name
        else:
            problems[variable] = "is neither an envelope nor a reference"
    if references:
        if DATABASE_VARIABLE in problems:
            unread = f"not read: {DATABASE_VARIABLE} does not resolve"
            problems.update(dict.fromkeys(references, unread))
        else:
            url = values.get(DATABASE_VARIABLE, database_url)
            _read_references(references, url, keys, values, problems)
    if problems:
        raise Unresolved(problems)
    return values


def _read_references(
    references: Mapping[str, str],
    database_url: str,
    keys: DataKeys,
    values: dict[str, str],
    problems: dict[str, str],
) -> None:
    from sqlalchemy import create_engine, text  # cold start: only when a reference is set
    from sqlalchemy.exc import SQLAlchemyError  # cold start: same
    from sqlalchemy.pool import NullPool  # cold start: same

    mysql = database_url.startswith("mysql")
    connect_args = {"connect_timeout": CONNECT_TIMEOUT_S} if mysql else {}
    stored: dict[str, str | None] = {}
    try:
        # One connection of its own, closed at once: the app's pool is built from the
        # settings being resolved here.
        engine = create_engine(database_url, poolclass=NullPool, connect_args=connect_args)
        try:
            with engine.connect() as connection:
                for name in sorted(set(references.values())):
                    row = connection.execute(text(READ_SECRET), {"name": name}).first()
                    stored[name] = None if row is None else str(row[0])
        finally:
            engine.dispose()
    except (SQLAlchemyError, ValueError, ImportError) as error:  # ImportError: no driver
        unread = f"the secrets table could not be read ({describe_database_error(error)})"
        problems.update(dict.fromkeys(references, unread))
        return
    for variable, name in references.items():
        envelope = stored.get(name)
        if envelope is None:
            problems[variable] = (
                f"secret {name} is not stored (make -s secret-put NAME={name}, "
                f"or PUT /admin/secrets/{name})"
            )
            continue
        try:
            values[variable] = _text(envelopes.open(envelope, name, keys))
        except EnvelopeError as error:
            problems[variable] = f"secret {name} does not open: {error}"


def _text(plaintext: bytes) -> str:
    try:
        return plaintext.decode("utf-8")
    except UnicodeDecodeError:
        raise EnvelopeError("the sealed value is not UTF-8 text") from None


def describe_database_error(error: Exception) -> str:
    """The error's class and the driver's numeric code: a driver's message may quote the
    connection string, password included."""
    args = getattr(getattr(error, "orig", None), "args", ())
    code = args[0] if args and isinstance(args[0], int) else None
    return type(error).__name__ + ("" if code is None else f" {code}")
