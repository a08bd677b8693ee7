"""The suite's log guard knows what the tests put into the vault, and what KMS hands out to
open it: a line that quotes a stored secret's value (an upstream's header, an error message
about it) or a data key fails the test that wrote it, like any other secret's."""

from __future__ import annotations

import base64
import secrets

from app.config import get_settings
from app.crypto import providers
from tests.fakes.kms import FakeKms
from tests.support.settings import settings_env
from tests.test_log_guard import found, record
from tests.vault.test_admin_secrets import new_name, put_secret


def test_a_line_holding_a_stored_value_is_found() -> None:
    value = "sk-" + secrets.token_urlsafe(24)
    assert put_secret(new_name(), value).status == 204
    lines = found(
        record(
            "upstream answered", name="app.runner", headers={"Authorization": f"Bearer {value}"}
        ),
        record("step failed", reason=f"401: the key {value} is revoked"),
    )
    assert len(lines) == 2 and not any(value in line for line in lines)


def test_a_stored_value_with_spaces_is_found_inside_a_line() -> None:
    value = f"user {secrets.token_hex(4)} pass"
    assert put_secret(new_name(), value).status == 204
    assert len(found(record("x", sent=f"Basic {value}!"))) == 1


def test_a_data_key_kms_hands_out_is_found(kms: FakeKms) -> None:
    with settings_env(**kms.env(kms.create_key())):
        data_key = providers.from_settings(get_settings()).generate(new_name())
    plaintext = base64.b64encode(data_key.plaintext).decode()
    lines = found(record("x", kms_answer={"Plaintext": plaintext}))
    assert len(lines) == 1 and plaintext not in lines[0]
