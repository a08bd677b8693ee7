"""Seal a secret read on stdin, for an operator (README "Secrets and KMS"):

- `python -m infra.seal encrypt NAME` (`make -s encrypt NAME=...`) prints one line on
  stdout, an envelope bound to the variable NAME, and nothing else;
- `python -m infra.seal put NAME` (`make -s secret-put NAME=...`) stores the value sealed
  in the `secrets` row NAME through DATABASE_URL (an envelope there is opened first), for
  a variable to name as `secret:NAME`: how PEM keys reach production before any admin
  exists. The put is recorded in `admin_actions` (app.audit) as the `operator`'s.

One trailing newline of the input is dropped. The provider and key are the settings'
(CRYPTO_PROVIDER, KMS_KEY_ID or LOCAL_MASTER_KEY, the Tencent Cloud credentials); nothing
else in the environment is resolved. Under the defaults (APP_ENV=local, nothing else set)
that is the public laptop key, DEV_LOCAL_MASTER_KEY: both commands still seal, and warn on
stderr that anyone can open what they sealed and production refuses it. Every error goes
to stderr, in words, never with the value, and exits 1 (through make, 2: make's own status
for a failed command).
"""

from __future__ import annotations

import argparse
import sys
from typing import BinaryIO, TextIO

from pydantic import ValidationError
from sqlalchemy import create_engine
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.pool import NullPool

from app.audit import Actor, trail
from app.config import Settings
from app.config.defaults import DEV_LOCAL_MASTER_KEY
from app.config.refusals import without_values
from app.config.variables import ENVELOPE_NAMES, SEALABLE_VARIABLES
from app.crypto import envelopes, is_sealed, local, providers, resolution
from app.crypto.errors import EnvelopeError
from app.db.tables import admin_actions
from app.vault import store as store_rows

MAX_SECRET_BYTES = 4096
# Past this an envelope takes much of the 4 KB SCF gives all of a function's variables.
LONG_ENVELOPE_CHARS = 2048
# The id envelopes sealed under the public laptop key carry, however LOCAL_MASTER_KEY spells
# that key (base64 or URL-safe, padded or not) and whether it was set or defaulted.
# Who `put` records in the audit trail: an operator's shell, which holds no admin's identity.
OPERATOR = Actor(user_id="operator", request_id="secret-put")
PUBLIC_KEY_ID = local.key_id_for(local.parse_master_key(DEV_LOCAL_MASTER_KEY))
PUBLIC_KEY_WARNING = (
    "warning: sealed with the public development key (DEV_LOCAL_MASTER_KEY, what "
    "LOCAL_MASTER_KEY defaults to under APP_ENV=local): anyone can open it and production "
    "refuses it; for a deployment seal with CRYPTO_PROVIDER=kms and KMS_KEY_ID\n"
)


class Refused(Exception):
    """What the operator is told on stderr; the command exits 1."""


def read_value(stdin: BinaryIO, limit: int | None = None) -> bytes:
    """stdin without one trailing newline (\\n or \\r\\n); Refused when empty or too long."""
    value = stdin.read()
    if value.endswith(b"\n"):
        value = value[:-2] if value.endswith(b"\r\n") else value[:-1]
    if not value:
        raise Refused("nothing on stdin: give the secret as input (< file, or a pipe)")
    if limit is not None and len(value) > limit:
        raise Refused(f"the value is {len(value)} bytes; a secret holds at most {limit}")
    try:
        value.decode("utf-8")
    except UnicodeDecodeError:
        raise Refused("the value is not UTF-8 text (settings hold text)") from None
    return value


def check_name(name: str, what: str) -> None:
    if not name:
        raise Refused(f"NAME is required: the {what}, e.g. NAME=JWT_SECRET")
    if not resolution.SECRET_NAME.fullmatch(name):
        raise Refused(f"NAME={name!r}: a {what} name is [A-Z][A-Z0-9_]{{0,63}}")


def warn_if_public(key_id: str, stderr: TextIO) -> None:
    if key_id == PUBLIC_KEY_ID:
        stderr.write(PUBLIC_KEY_WARNING)


def crypto_settings() -> Settings:
    """The settings as the environment spells them, envelopes left sealed."""
    try:
        return Settings.from_environ(resolve=False)
    except ValidationError as error:
        raise Refused(f"settings: {without_values(error)}") from None


def encrypt(name: str, stdin: BinaryIO, stdout: TextIO, stderr: TextIO) -> None:
    check_name(name, "variable")
    if name not in SEALABLE_VARIABLES:
        # Its envelope would stop every instance at load: nothing opens it there.
        raise Refused(
            f"NAME={name}: not a key or secret variable, none of which the settings open "
            f"from an envelope ({', '.join(sorted(SEALABLE_VARIABLES))})"
        )
    value = read_value(stdin)
    settings = crypto_settings()
    context = ENVELOPE_NAMES.get(name, name)
    envelope = envelopes.seal(value, context, providers.from_settings(settings))
    stdout.write(envelope + "\n")
    key = envelopes.key_id_of(envelope)
    stderr.write(f"sealed for {context} with {settings.crypto_provider} key {key}\n")
    warn_if_public(key, stderr)
    if len(envelope) > LONG_ENVELOPE_CHARS:
        stderr.write(
            f"note: {len(envelope)} characters of the 4 KB SCF gives all of a function's "
            f"variables; `make -s secret-put NAME={name}` stores it instead, and the "
            f"variable then holds secret:{name}\n"
        )


def put(name: str, stdin: BinaryIO, stderr: TextIO) -> None:
    check_name(name, "secret")
    value = read_value(stdin, MAX_SECRET_BYTES)
    settings = crypto_settings()
    url = settings.database_url
    if is_sealed(url):
        try:
            timeout_s = settings.secrets_load_timeout_s
            opened = resolution.resolve({"DATABASE_URL": url}, settings, url, timeout_s=timeout_s)
            url = opened["DATABASE_URL"]
        except resolution.Unresolved as error:
            raise Refused(str(error)) from None
    envelope = envelopes.seal(value, name, providers.from_settings(settings))
    key_id = envelopes.key_id_of(envelope)
    version = store(url, name, envelope)
    stderr.write(
        f"stored secret {name} (version {version}, {settings.crypto_provider} key {key_id}); "
        f"a variable names it as secret:{name}\n"
    )
    warn_if_public(key_id, stderr)


def store(url: str, name: str, envelope: str) -> int:
    """Insert or replace the row, on a connection of its own; the row's version after."""
    # The app's isolation: under MySQL's REPEATABLE READ the update of a row not there yet
    # locks the gap, and two first writes of a name (two operators, or this and a PUT)
    # deadlock on their inserts instead of one updating what the other inserted.
    mysql = url.startswith("mysql")
    options = {"isolation_level": "READ COMMITTED"} if mysql else {}
    try:
        engine = create_engine(url, poolclass=NullPool, **options)
    # Not a URL, or its driver is not here; ValueError: a port that is no number, which
    # quotes it, and a password holding an unescaped `@` and `:` puts its tail there.
    except (SQLAlchemyError, ImportError, ValueError) as error:
        raise Refused(
            f"DATABASE_URL is no database URL this can connect with ({type(error).__name__}); "
            "it is mysql+pymysql://... or sqlite:///..."
        ) from None
    try:
        for _ in range(2):  # a concurrent first insert of the same name: update it instead
            try:
                with engine.begin() as connection:
                    version = store_rows.write_row(connection, name, envelope)
                    row = trail.entry(OPERATOR, "secret.put", name, {"version": version})
                    connection.execute(admin_actions.insert().values(**row))
                    return version
            except IntegrityError:
                continue
        raise Refused(f"secret {name} changed under us twice: run it again")
    except Refused:
        raise
    # Whatever the driver raised: it takes the URL's query as its arguments, where an
    # unescaped `@` and `?` put a password's tail (TypeError naming it), not only its own.
    except Exception as error:  # noqa: BLE001 - named by class and code, never its text
        described = resolution.describe_database_error(error)
        raise Refused(
            f"the secrets table could not be written ({described}); is the database "
            "migrated (make migrate)?"
        ) from None
    finally:
        engine.dispose()


def main(
    argv: list[str] | None = None,
    stdin: BinaryIO | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.seal", description=__doc__)
    parser.add_argument("command", choices=("encrypt", "put"))
    parser.add_argument("name", nargs="?", default="")
    args = parser.parse_args(argv)
    stdin = stdin or sys.stdin.buffer
    stdout, stderr = stdout or sys.stdout, stderr or sys.stderr
    try:
        if args.command == "encrypt":
            encrypt(args.name, stdin, stdout, stderr)
        else:
            put(args.name, stdin, stderr)
    except Refused as error:
        stderr.write(f"{args.command}: {error}\n")
        return 1
    except EnvelopeError as error:
        stderr.write(f"{args.command}: {error}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
