"""The values of variables that hold an envelope or a reference, for app.config, once per
instance and before anything serves.

- `enc:v1:...` is opened with the variable's name as its context (or the name `contexts`
  gives it): an envelope made for another variable does not open.
- `secret:NAME` is the `secrets` row NAME, read through DATABASE_URL (resolved first if it
  is itself an envelope) on a connection of its own, closed at once; its `envelope` column
  is opened with NAME as the context. DATABASE_URL itself cannot be a reference.

All or nothing: every variable that does not resolve is named, with the reason, in one
`Unresolved`; no value, data key or connection string is ever part of it.

One deadline for the whole load (`timeout_s`, SECRETS_LOAD_TIMEOUT_S): the envelopes are
opened at once, each on a thread of its own (under `kms`, one Decrypt each), then the
references are read and their envelopes opened the same way, in what is left of it. With
KMS slow or unreachable the load fails in about one timeout, naming what had not answered,
where one call after another waited the SDK's timeout each (12 envelopes: a minute, SCF's
initialisation limit); nothing more is asked once the deadline has passed. A call still
waiting is left to end on its own timeout (the SDK's, the connection's) on a daemon
thread: nothing waits for it, and it keeps no process from ending. A healthy load takes
one KMS round trip for the envelopes (and one more for the references), not one each.
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, wait
from typing import TypeVar

from app.crypto import ENVELOPE_MARK, REFERENCE_MARK, envelopes
from app.crypto.errors import EnvelopeError
from app.crypto.providers import CryptoSettings, DataKeys, from_settings

DATABASE_VARIABLE = "DATABASE_URL"
# A stored secret's name (the same rule as PUT /admin/secrets/{name}).
SECRET_NAME = re.compile(r"[A-Z][A-Z0-9_]{0,63}")
READ_SECRET = "SELECT envelope FROM secrets WHERE name = :name"  # noqa: S105 - a query
CONNECT_TIMEOUT_S = 5

T = TypeVar("T")


class Unresolved(ValueError):
    def __init__(self, problems: Mapping[str, str]) -> None:
        self.problems = dict(problems)  # variable -> why it does not resolve
        super().__init__("; ".join(f"{name}: {why}" for name, why in self.problems.items()))


def resolve(
    sealed: Mapping[str, str],
    settings: CryptoSettings,
    database_url: str,
    *,
    timeout_s: float,
    contexts: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The value of each variable of `sealed` (name -> envelope or reference), or Unresolved,
    within `timeout_s` in all. `database_url` is DATABASE_URL as configured: plain, or an
    envelope also in `sealed`. `contexts`: the name a variable's envelope is sealed for,
    where it is not the variable's own."""
    keys = from_settings(settings)
    deadline = _Deadline(timeout_s)
    values: dict[str, str] = {}
    problems: dict[str, str] = {}
    references: dict[str, str] = {}
    to_open: dict[str, tuple[str, str]] = {}
    for variable, value in sealed.items():
        if value.startswith(ENVELOPE_MARK):
            to_open[variable] = (value, (contexts or {}).get(variable, variable))
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
    failed = dict.fromkeys(to_open, "the envelope does not open")
    _open_all(to_open, keys, deadline, failed, values, problems)
    if references:
        if DATABASE_VARIABLE in problems:
            unread = f"not read: {DATABASE_VARIABLE} does not resolve"
            problems.update(dict.fromkeys(references, unread))
        elif deadline.passed():
            unread = f"not read: {deadline.spent()} before the secrets table could be read"
            problems.update(dict.fromkeys(references, unread))
        else:
            url = values.get(DATABASE_VARIABLE, database_url)
            _read_references(references, url, keys, deadline, values, problems)
    if problems:
        raise Unresolved(problems)
    return values


class _Deadline:
    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self.at = time.monotonic() + timeout_s

    def left(self) -> float:
        return max(0.0, self.at - time.monotonic())

    def passed(self) -> bool:
        return self.left() == 0

    def spent(self) -> str:
        return f"SECRETS_LOAD_TIMEOUT_S ({self.timeout_s:g} s) passed"


def _within(deadline: _Deadline, calls: Mapping[str, Callable[[], T]]) -> dict[str, Future[T]]:
    """Each call run at once on a daemon thread of its own; by the deadline (or as soon as
    all have ended) the futures, those not done then left running unwaited."""
    futures: dict[str, Future[T]] = {}
    for name, call in calls.items():
        future: Future[T] = Future()
        future.set_running_or_notify_cancel()
        futures[name] = future
        threading.Thread(
            target=_settle, args=(future, call), name="secrets-load", daemon=True
        ).start()
    wait(futures.values(), timeout=deadline.left())
    return futures


def _settle(future: Future[T], call: Callable[[], T]) -> None:
    try:
        future.set_result(call())
    except BaseException as error:  # noqa: BLE001 - handed to the waiting thread, as raised
        future.set_exception(error)


def _open_all(
    to_open: Mapping[str, tuple[str, str]],
    keys: DataKeys,
    deadline: _Deadline,
    failed: Mapping[str, str],
    values: dict[str, str],
    problems: dict[str, str],
) -> None:
    """Open each variable's envelope (variable -> (envelope, context)) at once, under the
    deadline: its value into `values`, or why not into `problems` (`failed[variable]:
    <reason>`). Nothing is asked once the deadline has passed."""
    if deadline.passed():
        late = f"not tried, {deadline.spent()}"
        problems.update({variable: f"{failed[variable]}: {late}" for variable in to_open})
        return

    def opener(envelope: str, context: str) -> Callable[[], str]:
        return lambda: _text(envelopes.open(envelope, context, keys))

    calls = {variable: opener(*sealed) for variable, sealed in to_open.items()}
    for variable, future in _within(deadline, calls).items():
        if not future.done():
            problems[variable] = f"{failed[variable]}: no answer before {deadline.spent()}"
        elif isinstance(error := future.exception(), EnvelopeError):
            problems[variable] = f"{failed[variable]}: {error}"
        elif error is not None:
            raise error  # a bug, not an envelope that does not open
        else:
            values[variable] = future.result()


def _read_references(
    references: Mapping[str, str],
    database_url: str,
    keys: DataKeys,
    deadline: _Deadline,
    values: dict[str, str],
    problems: dict[str, str],
) -> None:
    names = sorted(set(references.values()))
    # Waited for no longer than the deadline; its own timeouts end it soon after.
    timeout_s = max(1, min(CONNECT_TIMEOUT_S, math.ceil(deadline.left())))
    [read] = _within(deadline, {"rows": lambda: _rows(database_url, names, timeout_s)}).values()
    if not read.done():
        unread = f"the secrets table could not be read: no answer before {deadline.spent()}"
        problems.update(dict.fromkeys(references, unread))
        return
    error = read.exception()
    # Whatever the read raised: not only SQLAlchemy's errors (ImportError: no driver), for
    # the driver takes the URL's query as its arguments, and a password holding an
    # unescaped `@` and `?` puts its tail there (`TypeError: ... unexpected keyword
    # argument 'Tail'`), a crash whose text SCF would log with the load's traceback.
    if isinstance(error, Exception):
        unread = f"the secrets table could not be read ({describe_database_error(error)})"
        problems.update(dict.fromkeys(references, unread))
        return
    if error is not None:
        raise error
    stored = read.result()
    # Each secret opened once, however many variables name it: opened at once, two opens of
    # one secret would each miss the data key the other was still asking KMS for.
    to_open = {name: (envelope, name) for name, envelope in stored.items() if envelope is not None}
    failed = {name: f"secret {name} does not open" for name in to_open}
    opened: dict[str, str] = {}
    refused: dict[str, str] = {}
    _open_all(to_open, keys, deadline, failed, opened, refused)
    for variable, name in references.items():
        if name in opened:
            values[variable] = opened[name]
        elif name in refused:
            problems[variable] = refused[name]
        else:
            problems[variable] = (
                f"secret {name} is not stored (make -s secret-put NAME={name}, "
                f"or PUT /admin/secrets/{name})"
            )


def _rows(database_url: str, names: list[str], timeout_s: int) -> dict[str, str | None]:
    """The envelope of each named secret (None: not stored), on a connection of its own."""
    from sqlalchemy import create_engine, text  # cold start: only when a reference is set
    from sqlalchemy.pool import NullPool  # cold start: same

    mysql = database_url.startswith("mysql")
    timeouts = ("connect_timeout", "read_timeout", "write_timeout")
    connect_args = dict.fromkeys(timeouts, timeout_s) if mysql else {}
    stored: dict[str, str | None] = {}
    # One connection of its own, closed at once: the app's pool is built from the settings
    # being resolved here.
    engine = create_engine(database_url, poolclass=NullPool, connect_args=connect_args)
    try:
        with engine.connect() as connection:
            for name in names:
                row = connection.execute(text(READ_SECRET), {"name": name}).first()
                stored[name] = None if row is None else str(row[0])
    finally:
        engine.dispose()
    return stored


def _text(plaintext: bytes) -> str:
    try:
        return plaintext.decode("utf-8")
    except UnicodeDecodeError:
        raise EnvelopeError("the sealed value is not UTF-8 text") from None


def describe_database_error(error: Exception) -> str:
    """The error's class and the driver's numeric code: a driver's message may quote the
    connection string, password included. `error` is SQLAlchemy's (the driver's error as
    its `orig`) or the driver's own."""
    args = getattr(getattr(error, "orig", error), "args", ())
    code = args[0] if args and isinstance(args[0], int) else None
    return type(error).__name__ + ("" if code is None else f" {code}")
