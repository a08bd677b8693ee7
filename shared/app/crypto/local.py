"""The `local` provider: data keys derived from LOCAL_MASTER_KEY, for laptops and tests.
Production refuses it (app.config): its master key sits in the same environment as what it
protects.

LOCAL_MASTER_KEY is 32 random bytes in base64 (standard or URL-safe, padding optional):
`openssl rand -base64 32`, or
`python -c "import base64, secrets; print(base64.b64encode(secrets.token_bytes(32)).decode())"`.
Its key id, `local-` and the first 16 hex digits of a SHA-256 of it, is written in every
envelope, so an envelope sealed under another master key is refused as an unknown key
before anything is decrypted. The id says which key, and nothing of it.

A data key is HMAC-SHA256(master key, label | salt | context) under a fresh 16-byte salt;
the salt is what the envelope stores as the wrapped key: without the master key it gives
nothing, and the context (the name) is bound into the key as KMS binds its encryption
context.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os

from app.crypto.errors import EnvelopeError
from app.crypto.keys import DATA_KEY_BYTES, DataKey

PROVIDER = "local"
MASTER_KEY_BYTES = 32
SALT_BYTES = 16
_ID_LABEL = b"ai-platform local master key id\x00"
_KEY_LABEL = b"ai-platform local data key v1\x00"


def parse_master_key(text: str) -> bytes:
    """The 32 bytes LOCAL_MASTER_KEY holds; EnvelopeError (without the text) otherwise."""
    compact = text.strip().replace("-", "+").replace("_", "/").rstrip("=")
    try:
        key = base64.b64decode(compact + "=" * (-len(compact) % 4), validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if len(key) != MASTER_KEY_BYTES:
        raise EnvelopeError(
            "LOCAL_MASTER_KEY is not 32 bytes in base64 (make one: openssl rand -base64 32)"
        )
    return key


def key_id_for(master_key: bytes) -> str:
    return "local-" + hashlib.sha256(_ID_LABEL + master_key).hexdigest()[:16]


class LocalKeys:
    provider = PROVIDER

    def __init__(self, master_key_text: str) -> None:
        self._master = parse_master_key(master_key_text)
        self.key_id = key_id_for(self._master)

    def generate(self, context: str) -> DataKey:
        salt = os.urandom(SALT_BYTES)
        return DataKey(self._derive(salt, context), salt, self.key_id, PROVIDER)

    def unwrap(self, key_id: str, wrapped: bytes, context: str) -> bytes:
        if key_id != self.key_id:
            raise EnvelopeError(
                f"unknown key {key_id}: sealed under another LOCAL_MASTER_KEY than {self.key_id}"
            )
        if len(wrapped) != SALT_BYTES:
            raise EnvelopeError("tampered: the local wrapped key has the wrong size")
        return self._derive(wrapped, context)

    def _derive(self, salt: bytes, context: str) -> bytes:
        key = hmac.new(self._master, _KEY_LABEL + salt + context.encode(), hashlib.sha256)
        return key.digest()[:DATA_KEY_BYTES]
