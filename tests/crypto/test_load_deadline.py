"""The load's one deadline (SECRETS_LOAD_TIMEOUT_S): the envelopes are asked of KMS at once,
so with KMS slow every variable is named by the deadline and no Decrypt reaches KMS after
it (where one call after another waited the SDK's 5 s each: N envelopes, N times 5 s);
what the references need (the secrets table, their Decrypts) is not asked once it has
passed, and a database that never answers is named by it too. No test measures how long
the load took: they count the calls made after the deadline (the fake's own arrival
times) or wait, far longer than the deadline, for a load that would otherwise never end."""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Iterator

import pytest

from app.config import Settings
from tests.crypto.test_resolution import put_secret, refusal, sealed
from tests.fakes.kms import FakeKms
from tests.support.net import silent_port

TIMEOUT_S = 2
LATE = f"no answer before SECRETS_LOAD_TIMEOUT_S ({TIMEOUT_S} s) passed"
ENVELOPED = ("JWT_SECRET", "WECHAT_SECRET", "METRICS_TOKEN", "REDIS_URL", "ALIPAY_PRIVATE_KEY")


def opening_env(kms_env: dict[str, str], **more: str) -> dict[str, str]:
    """Settings that open (no KMS_KEY_ID: an instance that only opens), with a keyring of
    their own: the one that sealed keeps the data keys it made, and would ask KMS nothing."""
    env = {k: v for k, v in kms_env.items() if k != "KMS_KEY_ID"}
    return {**env, "SECRETS_LOAD_TIMEOUT_S": str(TIMEOUT_S), **more}


def asked_since(kms: FakeKms, name: str, since: float) -> list[float]:
    """When each Decrypt under `name` reached the fake since `since` (earlier tests' calls
    under the same variable's name are not this test's)."""
    return [call.at for call in kms.calls("Decrypt", name) if call.at >= since]


def values_for(kms_env: dict[str, str]) -> dict[str, str]:
    """Each of ENVELOPED, a fresh value sealed for it (never opened before, so never cached)."""
    plain = {name: secrets.token_urlsafe(48) for name in ENVELOPED}
    plain["REDIS_URL"] = "redis://:pw@10.0.0.5:6379/3"
    return {name: sealed(kms_env, value, name) for name, value in plain.items()}


@pytest.fixture
def stalled_decrypts(kms: FakeKms) -> Iterator[None]:
    release = kms.stall("Decrypt")
    try:
        yield
    finally:
        release.set()  # and every later Decrypt goes straight through


@pytest.mark.usefixtures("stalled_decrypts")
def test_a_slow_kms_fails_the_load_by_one_deadline_naming_every_envelope(
    kms: FakeKms, kms_env: dict[str, str]
) -> None:
    env = opening_env(kms_env, **values_for(kms_env))
    started = time.monotonic()

    refused = refusal(env)

    for name in ENVELOPED:
        assert f"{name}: the envelope does not open: {LATE}" in refused
    arrivals = [at for name in ENVELOPED for at in asked_since(kms, name, started)]
    assert len(arrivals) == len(ENVELOPED)  # each asked once
    after_deadline = [at for at in arrivals if at > started + TIMEOUT_S]
    assert after_deadline == []


def test_references_are_not_read_once_a_slow_envelope_has_spent_the_deadline(
    kms: FakeKms, kms_env: dict[str, str], stored_names: list[str]
) -> None:
    name = f"METRICS_{secrets.token_hex(4).upper()}"
    put_secret(kms_env, name, secrets.token_hex(32))
    stored_names.append(name)
    env = opening_env(
        kms_env,
        JWT_SECRET=sealed(kms_env, secrets.token_urlsafe(64), "JWT_SECRET"),
        WECHAT_SECRET=sealed(kms_env, "wx-secret", "WECHAT_SECRET"),
        METRICS_TOKEN=f"secret:{name}",
    )
    held = kms.hold("Decrypt", "JWT_SECRET")
    try:
        refused = refusal(env)
    finally:
        held.release.set()

    assert f"JWT_SECRET: the envelope does not open: {LATE}" in refused
    assert (
        f"METRICS_TOKEN: not read: SECRETS_LOAD_TIMEOUT_S ({TIMEOUT_S} s) passed before the "
        "secrets table could be read" in refused
    )
    assert "WECHAT_SECRET" not in refused  # it opened in time
    assert kms.calls("Decrypt", name) == []  # nothing asked after the deadline


def test_a_database_that_never_answers_is_named_by_the_deadline(
    kms: FakeKms, kms_env: dict[str, str]
) -> None:
    name = f"METRICS_{secrets.token_hex(4).upper()}"
    with silent_port() as port:
        env = opening_env(
            kms_env,
            DATABASE_URL=f"mysql+pymysql://app:pw@127.0.0.1:{port}/app",
            METRICS_TOKEN=f"secret:{name}",
        )
        # On a thread, waited for far longer than the deadline: a connection with only a
        # connect timeout waited for the server's greeting for ever.
        outcome: list[str] = []
        loader = threading.Thread(target=lambda: outcome.append(refusal(env)), daemon=True)
        loader.start()
        loader.join(60)
        assert not loader.is_alive(), "the load is still waiting for the database"

    [refused] = outcome
    assert f"METRICS_TOKEN: the secrets table could not be read: {LATE}" in refused, refused
    assert kms.calls("Decrypt", name) == []


def test_a_healthy_kms_is_asked_for_every_envelope_at_once(
    kms: FakeKms, kms_env: dict[str, str]
) -> None:
    values = values_for(kms_env)
    env = opening_env(kms_env, **values, SECRETS_LOAD_TIMEOUT_S="30")
    held = kms.hold("Decrypt", "JWT_SECRET")
    loaded: list[Settings | BaseException] = []
    started = time.monotonic()

    def load() -> None:
        try:
            loaded.append(Settings.from_environ(env))
        except BaseException as error:
            loaded.append(error)

    loader = threading.Thread(target=load)
    loader.start()
    try:
        assert held.arrived.wait(10)
        others = [name for name in ENVELOPED if name != "JWT_SECRET"]
        # While JWT_SECRET's Decrypt is held, the others still reach KMS. One after
        # another, those after it would wait until it had answered, or until the SDK gave
        # up on it after 5 s: they are looked for for 3 s.
        looked_until = time.monotonic() + 3
        while time.monotonic() < looked_until:
            if all(asked_since(kms, name, started) for name in others):
                break
            time.sleep(0.01)
        assert {name for name in others if asked_since(kms, name, started)} == set(others)
    finally:
        held.release.set()
        loader.join(30)

    [settings] = loaded
    assert not isinstance(settings, BaseException), settings
    assert settings.redis_url == "redis://:pw@10.0.0.5:6379/3"
    assert settings.wechat_secret.get_secret_value()


def test_the_load_timeout_is_a_setting_within_scf_initialisation_limit() -> None:
    with pytest.raises(ValueError, match="secrets_load_timeout_s"):
        Settings.from_environ({"SECRETS_LOAD_TIMEOUT_S": "61"})
    assert Settings.from_environ({}).secrets_load_timeout_s == 5


def test_a_secret_two_variables_name_is_asked_of_kms_once(
    kms: FakeKms, kms_env: dict[str, str], stored_names: list[str]
) -> None:
    """Opened at once, two variables naming one secret would each miss the data key the
    other was still asking for: one Decrypt per stored secret, as one after another gave."""
    name = f"SHARED_{secrets.token_hex(4).upper()}"
    value = secrets.token_hex(32)
    put_secret(kms_env, name, value)
    stored_names.append(name)
    env = opening_env(
        kms_env,
        METRICS_TOKEN=f"secret:{name}",
        WECHAT_SECRET=f"secret:{name}",
        SECRETS_LOAD_TIMEOUT_S="30",
    )
    held = kms.hold("Decrypt", name)
    loaded: list[Settings] = []
    loader = threading.Thread(target=lambda: loaded.append(Settings.from_environ(env)))
    loader.start()
    try:
        assert held.arrived.wait(10)
        # While the first is held, a second Decrypt of the same secret would arrive now.
        looked_until = time.monotonic() + 2
        while time.monotonic() < looked_until and len(kms.calls("Decrypt", name)) < 2:
            time.sleep(0.01)
    finally:
        held.release.set()
        loader.join(30)

    [settings] = loaded
    assert settings.metrics_token.get_secret_value() == value
    assert settings.wechat_secret.get_secret_value() == value
    assert len(kms.calls("Decrypt", name)) == 1
