"""A data key, as a provider hands it out."""

from __future__ import annotations

from dataclasses import dataclass, field

PROVIDERS = ("kms", "local")
DATA_KEY_BYTES = 32  # AES-256


@dataclass(frozen=True)
class DataKey:
    plaintext: bytes = field(repr=False)  # never in a log line or a traceback's locals repr
    wrapped: bytes  # what the envelope stores: only the provider can turn it back
    key_id: str  # the key that wrapped it (a KMS CMK id, or the local master key's id)
    provider: str  # one of PROVIDERS
