"""A call after an update's commit sends the new value, whatever an earlier call on the
same instance was still doing: a value opened for an older version never takes the place
of a newer one, nor is it what a later call answers. KMS made slow for one call (the fake's
`hold`) lets the calls overtake one another in the order a busy instance can see."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from app.cloud_clients import CloudAccess
from app.config import get_settings
from app.crypto import envelopes, providers
from app.crypto.kms import KmsKeys
from app.db.transaction import transaction
from app.vault import store
from tests.fakes.kms import FakeKms
from tests.support import log_guard
from tests.support.settings import settings_env
from tests.vault.test_admin_secrets import new_name

WAIT_S = 30


def test_a_call_after_a_commit_sends_the_new_value_while_an_older_open_ends(
    kms: FakeKms,
) -> None:
    key = kms.create_key()
    first, second = sorted([new_name(), new_name()])
    with settings_env(**kms.env(key)), ThreadPoolExecutor(2) as pool:
        # Sealed by another instance (the admin's PUT): this one asks KMS to open each.
        elsewhere = providers.Keyring("kms", KmsKeys(CloudAccess.of(get_settings()), key), "")

        def put(name: str, value: str) -> None:
            log_guard.remember_stored(value)  # stored without PUT /admin/secrets
            with transaction() as tx:
                store.write_row(tx, name, envelopes.seal(value.encode(), name, elsewhere))

        put(first, "sk-old")
        put(second, "sk-second")
        # A call that read version 1 of `first` and is still opening it when the update commits.
        slow_old = kms.hold("Decrypt", first)
        earlier = pool.submit(store.values, [first])
        assert slow_old.arrived.wait(WAIT_S)
        put(first, "sk-new")
        # A call begun after the commit: it opens version 2 of `first`, then waits on `second`.
        slow_second = kms.hold("Decrypt", second)
        later = pool.submit(store.values, [first, second])
        assert slow_second.arrived.wait(WAIT_S)
        slow_old.release.set()  # the earlier call ends meanwhile, with what it had read
        assert earlier.result(timeout=WAIT_S) == {first: "sk-old"}
        slow_second.release.set()
        assert later.result(timeout=WAIT_S) == {first: "sk-new", second: "sk-second"}
        assert store.values([first]) == {first: "sk-new"}
