"""Crypto tests: the TC3-checking fake Tencent Cloud endpoint with KMS on it for the whole
run (a key that seals, keys made per test where one must be disabled), a LOCAL_MASTER_KEY,
the settings each provider is used with, and the secrets a test stores, deleted after."""

from __future__ import annotations

import base64
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete

from app.config import Settings
from app.crypto import providers
from app.db.engine import get_engine
from app.db.tables import secrets as secrets_table
from tests.fakes.kms import FakeKms
from tests.fakes.tencentcloud import FakeTencentCloud
from tests.support.functions import ROOT


def new_master_key() -> str:
    return base64.b64encode(secrets.token_bytes(32)).decode()


@pytest.fixture(scope="session")
def cloud() -> Iterator[FakeTencentCloud]:
    with FakeTencentCloud() as fake:
        yield fake


@pytest.fixture(scope="session")
def kms(cloud: FakeTencentCloud) -> FakeKms:
    return FakeKms(cloud)


@pytest.fixture(scope="session")
def kms_key(kms: FakeKms) -> str:
    return kms.create_key()


@pytest.fixture
def kms_env(kms: FakeKms, kms_key: str) -> dict[str, str]:
    return {**kms.env(kms_key), "DATABASE_URL": os.environ["DATABASE_URL"]}


@pytest.fixture
def local_env() -> dict[str, str]:
    return {
        "CRYPTO_PROVIDER": "local",
        "LOCAL_MASTER_KEY": new_master_key(),
        "DATABASE_URL": os.environ["DATABASE_URL"],
    }


@pytest.fixture
def stored_names() -> Iterator[list[str]]:
    """The names of the secrets a test stores, deleted after it."""
    names: list[str] = []
    yield names
    with get_engine().begin() as conn:
        conn.execute(delete(secrets_table).where(secrets_table.c.name.in_(names)))


def keys_for(env: dict[str, str]) -> Any:
    """The DataKeys the settings `env` give (the same object each time, as in an instance)."""
    return providers.from_settings(Settings.from_environ(env, resolve=False))


def make(
    target: str, name: str, value: bytes, env: dict[str, str]
) -> subprocess.CompletedProcess[bytes]:
    """`make -s <target> NAME=<name>` with `value` on stdin, on this interpreter's packages
    (STAMP= skips the install step: they are here already)."""
    return subprocess.run(
        ["make", "-s", target, f"NAME={name}", f"BIN={Path(sys.executable).parent}", "STAMP="],
        cwd=ROOT,
        input=value,
        env={"PATH": os.environ.get("PATH", ""), **env},
        capture_output=True,
        check=False,
        timeout=120,
    )
