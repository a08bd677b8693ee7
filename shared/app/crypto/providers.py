"""Where data keys come from: `from_settings(settings)` gives the process's DataKeys.

It seals under CRYPTO_PROVIDER's key (`kms`: KMS_KEY_ID; `local`: LOCAL_MASTER_KEY) and
opens an envelope of either provider it has the means for: `kms` ones whenever there are
Tencent Cloud credentials (KMS finds the key from the wrapped data key, so envelopes of
an older key still open), `local` ones when LOCAL_MASTER_KEY is set.

Unwrapped data keys are kept for the life of the process, by provider, key id, wrapped key
and context, so KMS sees one Decrypt per envelope per instance however many times the
value is read; a data key this process generated is kept the same way. Settings with the
same crypto values get the same DataKeys, so its cache survives a settings reload.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Protocol

from app.cloud_clients import CloudAccess, CloudSettings, SecretValue, reveal
from app.crypto.errors import EnvelopeError
from app.crypto.keys import PROVIDERS, DataKey
from app.crypto.kms import KmsKeys
from app.crypto.local import LocalKeys

__all__ = ["CryptoSettings", "DataKey", "DataKeys", "Keyring", "from_settings"]

# Unwrapped data keys kept per process: far more than one instance's envelopes.
CACHE_ENTRIES = 1024


class DataKeys(Protocol):
    @property
    def key_id(self) -> str:
        """The key new envelopes are sealed under."""
        ...

    def generate(self, context: str) -> DataKey: ...

    def unwrap(self, provider: str, key_id: str, wrapped: bytes, context: str) -> bytes: ...


class CryptoSettings(CloudSettings, Protocol):
    """What the providers read (app.config.Settings has it)."""

    @property
    def crypto_provider(self) -> str: ...
    @property
    def kms_key_id(self) -> str: ...
    @property
    def local_master_key(self) -> str | SecretValue: ...


class Keyring:
    """The DataKeys of one process (see the module docstring)."""

    def __init__(self, provider: str, kms: KmsKeys, local_master_key: str) -> None:
        if provider not in PROVIDERS:
            raise EnvelopeError(f"CRYPTO_PROVIDER must be kms or local, not {provider}")
        self.provider = provider
        self._kms = kms
        self._local_master_key = local_master_key
        self._local: LocalKeys | None = None
        self._cache: OrderedDict[tuple[str, str, bytes, str], bytes] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def key_id(self) -> str:
        """The key new envelopes are sealed under; EnvelopeError when it is not configured."""
        if self.provider == "local":
            return self._local_keys().key_id
        if not self._kms.key_id:
            raise EnvelopeError("KMS_KEY_ID is unset: CRYPTO_PROVIDER=kms seals under it")
        return self._kms.key_id

    def generate(self, context: str) -> DataKey:
        keys = self._local_keys() if self.provider == "local" else self._kms
        data_key = keys.generate(context)
        self._remember((data_key.provider, data_key.key_id, data_key.wrapped, context), data_key)
        return data_key

    def unwrap(self, provider: str, key_id: str, wrapped: bytes, context: str) -> bytes:
        entry = (provider, key_id, wrapped, context)
        with self._lock:
            if entry in self._cache:
                self._cache.move_to_end(entry)
                return self._cache[entry]
        if provider == "local":
            if not self._local_master_key:
                raise EnvelopeError(
                    f"unknown key {key_id}: sealed under a local master key, "
                    "and LOCAL_MASTER_KEY is unset"
                )
            plaintext = self._local_keys().unwrap(key_id, wrapped, context)
        elif provider == "kms":
            plaintext = self._kms.unwrap(key_id, wrapped, context)
        else:
            raise EnvelopeError(f"unknown provider {provider}")
        self._remember(entry, DataKey(plaintext, wrapped, key_id, provider))
        return plaintext

    def _remember(self, entry: tuple[str, str, bytes, str], data_key: DataKey) -> None:
        with self._lock:
            self._cache[entry] = data_key.plaintext
            self._cache.move_to_end(entry)
            while len(self._cache) > CACHE_ENTRIES:
                self._cache.popitem(last=False)

    def _local_keys(self) -> LocalKeys:
        if self._local is None:
            if not self._local_master_key:
                raise EnvelopeError(
                    "LOCAL_MASTER_KEY is unset: CRYPTO_PROVIDER=local seals under it "
                    "(make one: openssl rand -base64 32)"
                )
            self._local = LocalKeys(self._local_master_key)
        return self._local


_keyrings: dict[tuple[str, ...], Keyring] = {}
_keyrings_lock = threading.Lock()


def from_settings(settings: CryptoSettings) -> DataKeys:
    """The process's DataKeys for these settings (the same object for the same values)."""
    access = CloudAccess.of(settings)
    master_key = reveal(settings.local_master_key)
    config = (
        settings.crypto_provider,
        settings.kms_key_id,
        master_key,
        access.secret_id,
        access.secret_key,
        access.session_token,
        access.region,
        access.endpoint,
    )
    with _keyrings_lock:
        if config not in _keyrings:
            kms = KmsKeys(access, settings.kms_key_id)
            _keyrings[config] = Keyring(settings.crypto_provider, kms, master_key)
        return _keyrings[config]
