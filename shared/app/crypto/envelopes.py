"""Envelopes: a secret sealed under a data key of its own, bound to the name it belongs to.

`seal(plaintext, context, keys)` asks the provider for a fresh data key, encrypts with
AES-256-GCM under a fresh 12-byte nonce, and returns `enc:v1:` followed by the binary below
in base64url without padding (canonical: a changed character never decodes to the same
bytes). `open` reverses it, or raises EnvelopeError naming why not.

    offset   size  field
    0        1     format version: 1
    1        1     provider: 1 kms, 2 local
    2        1     n, the key id's length
    3        n     key id (ASCII): the KMS key, or the local master key's id
    3+n      4     context check: the first 4 bytes of SHA-256(context)
    7+n      2     m, the wrapped data key's length (big endian)
    9+n      m     wrapped data key (the provider's: KMS's CiphertextBlob, or a local salt)
    9+n+m    12    nonce
    21+n+m   ...   ciphertext, then the 16-byte GCM tag

The associated data is everything before the nonce followed by the context (the variable's
or the stored secret's name), so changing any byte, or opening under another name, fails
the tag. The context check only lets a misplaced envelope be named as such before any
provider is asked; it proves nothing (the tag does). KMS binds the context too, as the
data key's EncryptionContext.

Size: 7 + 4/3 x (37 + key id + wrapped key + plaintext) characters. An 86-character JWT
secret takes 222 under `local` (a 22-character key id, a 16-byte salt) and 423 under `kms`
(a 36-character key id, KMS's blob packed to 153 bytes): SCF gives a function 4 KB for all
its variables.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import struct
from dataclasses import dataclass

from app.crypto.errors import EnvelopeError
from app.crypto.keys import DATA_KEY_BYTES
from app.crypto.providers import DataKeys

__all__ = ["PREFIX", "EnvelopeError", "is_envelope", "key_id_of", "open", "seal"]

PREFIX = "enc:v1:"
VERSION = 1
NONCE_BYTES = 12
TAG_BYTES = 16
CHECK_BYTES = 4
MAX_CONTEXT_CHARS = 256
_PROVIDER_CODES = {"kms": 1, "local": 2}
_PROVIDER_NAMES = {code: name for name, code in _PROVIDER_CODES.items()}


@dataclass(frozen=True)
class _Parsed:
    provider: str
    key_id: str
    check: bytes
    wrapped: bytes
    header: bytes  # everything before the nonce: the associated data, with the context
    nonce: bytes
    sealed: bytes  # ciphertext and tag


def is_envelope(value: str) -> bool:
    return value.startswith(PREFIX)


def seal(plaintext: bytes, context: str, keys: DataKeys) -> str:
    """`plaintext` sealed under a fresh data key from `keys`, openable only under `context`."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM  # cold start: on use

    _check_context(context)
    data_key = keys.generate(context)
    if len(data_key.plaintext) != DATA_KEY_BYTES:
        raise EnvelopeError(f"the {data_key.provider} provider gave a data key of another size")
    key_id = data_key.key_id.encode("ascii")
    if not 0 < len(key_id) < 256 or len(data_key.wrapped) >= 65536:
        raise EnvelopeError(f"the {data_key.provider} provider gave an unusable key id or blob")
    header = (
        struct.pack("!BBB", VERSION, _PROVIDER_CODES[data_key.provider], len(key_id))
        + key_id
        + _check(context)
        + struct.pack("!H", len(data_key.wrapped))
        + data_key.wrapped
    )
    nonce = os.urandom(NONCE_BYTES)
    sealed = AESGCM(data_key.plaintext).encrypt(nonce, plaintext, header + context.encode())
    body = base64.urlsafe_b64encode(header + nonce + sealed).rstrip(b"=").decode("ascii")
    return PREFIX + body


def open(envelope: str, context: str, keys: DataKeys) -> bytes:
    """The plaintext sealed in `envelope` for `context`; EnvelopeError if it does not open."""
    from cryptography.exceptions import InvalidTag  # cold start: on use
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM  # cold start: on use

    _check_context(context)
    parsed = _parse(envelope)
    if parsed.check != _check(context):
        raise EnvelopeError(f"sealed for another name than {context}")
    data_key = keys.unwrap(parsed.provider, parsed.key_id, parsed.wrapped, context)
    if len(data_key) != DATA_KEY_BYTES:
        raise EnvelopeError(f"the {parsed.provider} provider gave a data key of another size")
    try:
        return AESGCM(data_key).decrypt(
            parsed.nonce, parsed.sealed, parsed.header + context.encode()
        )
    except InvalidTag:
        raise EnvelopeError("tampered: the envelope does not authenticate") from None


def key_id_of(envelope: str) -> str:
    """The key an envelope is sealed under (what a rotation compares with `keys.key_id`)."""
    return _parse(envelope).key_id


def _check(context: str) -> bytes:
    return hashlib.sha256(context.encode()).digest()[:CHECK_BYTES]


def _check_context(context: str) -> None:
    if not context or len(context) > MAX_CONTEXT_CHARS:
        raise EnvelopeError(f"a context is 1 to {MAX_CONTEXT_CHARS} characters")


def _parse(envelope: str) -> _Parsed:
    if not envelope.startswith(PREFIX):
        version = envelope.split(":")[1] if envelope.startswith("enc:") else ""
        if version[:1] == "v" and version[1:].isdigit():
            raise EnvelopeError(f"an envelope of version {version}; this code opens v1")
        raise EnvelopeError(f"not an envelope (one begins with {PREFIX})")
    body = envelope[len(PREFIX) :]
    try:
        raw = base64.b64decode(body + "=" * (-len(body) % 4), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError):
        raise EnvelopeError("malformed: not base64url") from None
    # Unused low bits of the last character would otherwise let two texts decode alike.
    if base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii") != body:
        raise EnvelopeError("malformed: not canonical base64url")
    try:
        version, provider, n = struct.unpack_from("!BBB", raw)
        key_id = raw[3 : 3 + n].decode("ascii")
        check = raw[3 + n : 7 + n]
        (m,) = struct.unpack_from("!H", raw, 7 + n)
    except (struct.error, UnicodeDecodeError):
        raise EnvelopeError("malformed: truncated or altered header") from None
    wrapped_end = 9 + n + m
    if version != VERSION:
        raise EnvelopeError(f"malformed: format version {version} inside a v1 envelope")
    if provider not in _PROVIDER_NAMES:
        raise EnvelopeError(f"malformed: unknown provider code {provider}")
    if not key_id or len(raw) < wrapped_end + NONCE_BYTES + TAG_BYTES:
        raise EnvelopeError("malformed: truncated or altered header")
    return _Parsed(
        provider=_PROVIDER_NAMES[provider],
        key_id=key_id,
        check=check,
        wrapped=raw[9 + n : wrapped_end],
        header=raw[:wrapped_end],
        nonce=raw[wrapped_end : wrapped_end + NONCE_BYTES],
        sealed=raw[wrapped_end + NONCE_BYTES :],
    )
