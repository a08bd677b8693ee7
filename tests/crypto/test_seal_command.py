"""`make -s encrypt NAME=...` and `make -s secret-put NAME=...` as an operator runs them (a
subprocess, the value on stdin, against the fake KMS or a local master key): one envelope
line on stdout and nothing else, or a clear refusal on stderr with a non-zero status."""

from __future__ import annotations

import io
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import delete, select

from app.config.defaults import DEV_LOCAL_MASTER_KEY
from app.crypto import envelopes
from app.db.engine import get_engine
from app.db.tables import admin_actions
from app.db.tables import secrets as secrets_table
from infra import seal
from tests.crypto.conftest import keys_for, make
from tests.fakes.kms import FakeKms
from tests.support.settings import settings_env

pytestmark = pytest.mark.slow

FAILED = 2  # make's status when the command it ran failed (the command exits 1)


def test_encrypt_prints_one_envelope_line_bound_to_the_name(
    kms_env: dict[str, str], local_env: dict[str, str]
) -> None:
    for env in (kms_env, local_env):
        done = make("encrypt", "WECHAT_SECRET", b"wx-secret\n\n", env)
        assert done.returncode == 0, done.stderr
        envelope = done.stdout.decode()
        assert envelope.endswith("\n") and envelope.count("\n") == 1
        envelope = envelope.rstrip("\n")
        keys = keys_for(env)
        # One trailing newline is dropped, and only one.
        assert envelopes.open(envelope, "WECHAT_SECRET", keys) == b"wx-secret\n"
        assert f"sealed for WECHAT_SECRET with {env['CRYPTO_PROVIDER']} key {keys.key_id}" in (
            done.stderr.decode()
        )
        assert "public development key" not in done.stderr.decode()


def test_encrypt_seals_jwt_previous_secret_as_jwt_secret_whose_value_it_takes_over(
    local_env: dict[str, str],
) -> None:
    done = make("encrypt", "JWT_PREVIOUS_SECRET", b"previous-jwt-secret\n", local_env)
    assert done.returncode == 0, done.stderr
    envelope = done.stdout.decode().rstrip("\n")
    assert envelopes.open(envelope, "JWT_SECRET", keys_for(local_env)) == b"previous-jwt-secret"
    assert "sealed for JWT_SECRET with local key" in done.stderr.decode()


def test_under_the_defaults_both_commands_warn_that_the_key_is_the_public_laptop_key() -> None:
    """APP_ENV=local with no key set seals under DEV_LOCAL_MASTER_KEY: it still seals, and
    says so on stderr; so does that key set by hand, however it is spelled."""
    database = {"DATABASE_URL": os.environ["DATABASE_URL"]}
    urlsafe = DEV_LOCAL_MASTER_KEY.replace("+", "-").replace("/", "_").rstrip("=")
    for env in (database, {**database, "CRYPTO_PROVIDER": "local", "LOCAL_MASTER_KEY": urlsafe}):
        done = make("encrypt", "JWT_SECRET", b"laptop-secret\n", env)
        assert done.returncode == 0, done.stderr
        envelope = done.stdout.decode()
        assert envelope.count("\n") == 1  # stdout is still the envelope alone
        laptop = {"APP_ENV": "local", "LOCAL_MASTER_KEY": DEV_LOCAL_MASTER_KEY}
        assert envelopes.open(envelope.strip(), "JWT_SECRET", keys_for(laptop)) == b"laptop-secret"
        warning = [line for line in done.stderr.decode().splitlines() if "warning" in line]
        assert warning == [seal.PUBLIC_KEY_WARNING.strip()], done.stderr
    try:
        stored = make("secret-put", "LAPTOP_TOKEN", b"v\n", database)
        assert stored.returncode == 0, stored.stderr
        assert seal.PUBLIC_KEY_WARNING in stored.stderr.decode()
    finally:
        with get_engine().begin() as conn:
            conn.execute(delete(secrets_table).where(secrets_table.c.name == "LAPTOP_TOKEN"))


def test_a_pem_key_is_sealed_whole(kms_env: dict[str, str], tmp_path: os.PathLike[str]) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    done = make("encrypt", "WECHATPAY_PRIVATE_KEY", pem, kms_env)
    assert done.returncode == 0, done.stderr
    envelope = done.stdout.decode().strip()
    opened = envelopes.open(envelope, "WECHATPAY_PRIVATE_KEY", keys_for(kms_env))
    assert opened + b"\n" == pem
    serialization.load_pem_private_key(opened, password=None)
    # Too long to travel beside the other variables: the command says where it goes instead.
    assert "make -s secret-put NAME=WECHATPAY_PRIVATE_KEY" in done.stderr.decode()


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("JWT_SECRET", b"", "nothing on stdin"),
        ("JWT_SECRET", b"\n", "nothing on stdin"),
        ("", b"v", "NAME is required"),
        ("jwt_secret", b"v", "[A-Z][A-Z0-9_]{0,63}"),
        ("JWT SECRET", b"v", "[A-Z][A-Z0-9_]{0,63}"),
        ("JWT_SECRET", b"\xff\xfe", "not UTF-8"),
        # No setting opens these from an envelope: the instance would stop at load.
        ("JWT_ISSUER", b"v", "NAME=JWT_ISSUER: not a key or secret variable"),
        ("LOCAL_MASTER_KEY", b"v", "NAME=LOCAL_MASTER_KEY: not a key or secret variable"),
    ],
)
def test_encrypt_refuses_bad_input_on_stderr_only(
    local_env: dict[str, str], name: str, value: bytes, says: str
) -> None:
    done = make("encrypt", name, value, local_env)
    assert (done.returncode, done.stdout) == (FAILED, b"")
    assert "encrypt: " in done.stderr.decode() and says in done.stderr.decode()


def test_encrypt_says_what_kms_lacks_or_refuses(kms: FakeKms, kms_env: dict[str, str]) -> None:
    missing = make("encrypt", "JWT_SECRET", b"v", {**kms_env, "KMS_KEY_ID": ""})
    assert (missing.returncode, missing.stdout) == (FAILED, b"")
    assert "encrypt: KMS_KEY_ID is unset" in missing.stderr.decode()
    disabled = kms.create_key()
    kms.disable(disabled)
    refused = make("encrypt", "JWT_SECRET", b"v", {**kms_env, "KMS_KEY_ID": disabled})
    assert (refused.returncode, refused.stdout) == (FAILED, b"")
    assert "ResourceUnavailable.CmkDisabled" in refused.stderr.decode()
    no_keys = make("encrypt", "JWT_SECRET", b"v", {"CRYPTO_PROVIDER": "local", "APP_ENV": "test"})
    assert "LOCAL_MASTER_KEY is unset" in no_keys.stderr.decode()
    wrong = make("encrypt", "JWT_SECRET", b"v", {"CRYPTO_PROVIDER": "vault"})
    assert (wrong.returncode, wrong.stdout) == (FAILED, b"")
    assert "settings: CRYPTO_PROVIDER: Input should be 'kms' or 'local'" in wrong.stderr.decode()


def test_secret_put_stores_the_row_through_an_enveloped_database_url(
    local_env: dict[str, str],
) -> None:
    sealed_url = envelopes.seal(
        local_env["DATABASE_URL"].encode(), "DATABASE_URL", keys_for(local_env)
    )
    env = {**local_env, "DATABASE_URL": sealed_url}
    try:
        for value in (b"first\n", b"second\n"):
            done = make("secret-put", "UPSTREAM_TOKEN", value, env)
            assert (done.returncode, done.stdout) == (0, b""), done.stderr
        assert "stored secret UPSTREAM_TOKEN (version 2" in done.stderr.decode()
        with get_engine().connect() as conn:
            row = conn.execute(
                select(secrets_table).where(secrets_table.c.name == "UPSTREAM_TOKEN")
            ).one()
            recorded = conn.execute(
                select(admin_actions)
                .where(admin_actions.c.target == "UPSTREAM_TOKEN")
                .order_by(admin_actions.c.at)
            ).all()
        assert envelopes.open(row.envelope, "UPSTREAM_TOKEN", keys_for(local_env)) == b"second"
        # Each put is in the audit trail as the operator's, with its version, never the value.
        assert [(r.actor_id, r.action, r.changes) for r in recorded] == [
            ("operator", "secret.put", {"version": 1}),
            ("operator", "secret.put", {"version": 2}),
        ]
    finally:
        with get_engine().begin() as conn:
            conn.execute(delete(secrets_table).where(secrets_table.c.name == "UPSTREAM_TOKEN"))
            conn.execute(delete(admin_actions).where(admin_actions.c.target == "UPSTREAM_TOKEN"))


def test_secret_put_refuses_what_it_cannot_store(local_env: dict[str, str]) -> None:
    too_long = make("secret-put", "BIG", b"x" * 4097, local_env)
    assert too_long.returncode == FAILED and "at most 4096" in too_long.stderr.decode()
    unreachable = {**local_env, "DATABASE_URL": "mysql+pymysql://app:hunter2@127.0.0.1:1/app"}
    down = make("secret-put", "ANY", b"v", unreachable)
    assert down.returncode == FAILED
    assert "could not be written (OperationalError 2003)" in down.stderr.decode()
    assert "hunter2" not in down.stderr.decode()
    # Not a URL, or one of a driver the project does not install: said in words, no traceback.
    for url, error in [
        ("app:hunter2@db.internal/app", "ArgumentError"),
        ("postgresql://app:hunter2@127.0.0.1/app", "ModuleNotFoundError"),
        # A password holding an unescaped `@` and `:` leaves its tail in the port.
        ("mysql+pymysql://app:hunter2@pw:Tail9@127.0.0.1:1/app", "ValueError"),
    ]:
        refused = make("secret-put", "ANY", b"v", {**local_env, "DATABASE_URL": url})
        said = refused.stderr.decode()
        assert refused.returncode == FAILED and "Traceback" not in said, said
        assert f"put: DATABASE_URL is no database URL this can connect with ({error})" in (said)
        assert "hunter2" not in said and "Tail9" not in said
    # An unescaped `@` and `?` leave it in the query, which the driver takes as arguments.
    url = "mysql+pymysql://app:hunter2@pw?Tail9=1@127.0.0.1:1/app"
    refused = make("secret-put", "ANY", b"v", {**local_env, "DATABASE_URL": url})
    said = refused.stderr.decode()
    assert refused.returncode == FAILED and "Traceback" not in said, said
    assert "could not be written (TypeError)" in said and "Tail9" not in said


def test_first_writes_of_one_secret_at_once_all_store_one_after_another(
    local_env: dict[str, str],
) -> None:
    """Operators (or one and an admin's PUT) storing a new name at the same moment: each
    write lands, one version after another; none fails on a deadlock of their inserts."""
    writers = 4
    names = [f"RACED_{round_}" for round_ in range(3)]
    try:
        with settings_env(**local_env), ThreadPoolExecutor(writers) as pool:
            for name in names:
                start = threading.Barrier(writers)

                def put(value: bytes, name: str = name, start: threading.Barrier = start) -> str:
                    stderr = io.StringIO()
                    start.wait()
                    seal.put(name, io.BytesIO(value), stderr)
                    return stderr.getvalue()

                said = list(pool.map(put, [b"v%d" % i for i in range(writers)]))
                versions = sorted(int(line.split("(version ")[1].split(",")[0]) for line in said)
                assert versions == list(range(1, writers + 1)), said
    finally:
        with get_engine().begin() as conn:
            conn.execute(delete(secrets_table).where(secrets_table.c.name.in_(names)))
