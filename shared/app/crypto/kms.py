"""The `kms` provider: data keys from Tencent Cloud KMS (`tencentcloud-sdk-python-kms`).

`GenerateDataKey(KeyId, KeySpec="AES_256", EncryptionContext)` gives a data key and its
CiphertextBlob; `Decrypt(CiphertextBlob, EncryptionContext)` gives it back. The encryption
context is `{"name": <context>}`, so KMS itself refuses a data key asked for under another
name. KMS_KEY_ID names the key new envelopes are sealed under (its id, as the console
shows it; an envelope records the id KMS answers with); Decrypt finds the key from the
blob, so old envelopes keep opening after KMS_KEY_ID moves to a new key.

The SDK is imported when the first call is made, never at cold start.
"""

from __future__ import annotations

import base64
import binascii
import json
import threading
from typing import Any

from app import cloud_clients
from app.crypto.errors import EnvelopeError, ProviderUnavailable
from app.crypto.keys import DataKey

PROVIDER = "kms"
# What KMS's answers mean for an envelope (tencentcloud.kms.v20190118.errorcodes).
_UNKNOWN_KEY = ("ResourceUnavailable.CmkNotFound", "InvalidParameterValue.InvalidKeyId")
_UNUSABLE_KEY = (
    "ResourceUnavailable.CmkDisabled",
    "ResourceUnavailable.KeyDisabled",
    "ResourceUnavailable.CmkArchived",
    "ResourceUnavailable.KeyPendingDelete",
    "ResourceUnavailable.CmkStateNotSupport",
)
_BAD_BLOB = ("InvalidParameterValue.InvalidCiphertext", "FailedOperation.DecryptError")
# KMS's CiphertextBlob is text: base64 parts joined by this separator.
_PART_SEPARATOR = "-k-"
_RAW, _PARTS = 0, 1


def encryption_context(context: str) -> str:
    return json.dumps({"name": context}, separators=(",", ":"))


def pack_blob(blob: str) -> bytes:
    """The CiphertextBlob, compact: its base64 parts as bytes when each one turns back into
    exactly the same text, else the text itself. A quarter less in every envelope, and
    SCF gives a function 4 KB for all its variables."""
    parts = blob.split(_PART_SEPARATOR)
    packed = [_b64_exactly(part) for part in parts]
    if len(parts) < 256 and all(p is not None and len(p) < 256 for p in packed):
        body = b"".join(bytes([len(p)]) + p for p in packed if p is not None)
        return bytes([_PARTS, len(parts)]) + body
    return bytes([_RAW]) + blob.encode("ascii")


def unpack_blob(wrapped: bytes) -> str:
    """The CiphertextBlob text `pack_blob` packed; EnvelopeError if it is not one."""
    try:
        if wrapped[0] == _RAW:
            return wrapped[1:].decode("ascii")
        if wrapped[0] == _PARTS:
            parts, at = [], 2
            for _ in range(wrapped[1]):
                size = wrapped[at]
                if at + 1 + size > len(wrapped):
                    raise IndexError
                parts.append(base64.b64encode(wrapped[at + 1 : at + 1 + size]).decode())
                at += 1 + size
            if at == len(wrapped):
                return _PART_SEPARATOR.join(parts)
    except (IndexError, UnicodeDecodeError):
        pass
    raise EnvelopeError("tampered: the KMS wrapped key is malformed")


def _b64_exactly(text: str) -> bytes | None:
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None
    return data if base64.b64encode(data).decode() == text else None


def refusal(code: str, key_id: str) -> str:
    """Why KMS refused, in words, from its error code (its message is not repeated)."""
    if code in _UNKNOWN_KEY:
        return f"unknown key {key_id} (KMS {code})"
    if code in _UNUSABLE_KEY:
        return f"key {key_id} is disabled or being deleted (KMS {code})"
    if code in _BAD_BLOB:
        return f"KMS refused the wrapped data key (KMS {code}): tampered, or another name's"
    if code == "InvalidCredential":
        return "no Tencent Cloud credentials for KMS (TENCENTCLOUD_SECRET_ID/KEY, or a run role)"
    if code.startswith(("AuthFailure", "UnauthorizedOperation")):
        return f"KMS refused the credentials (KMS {code})"
    return f"KMS refused or could not be reached (KMS {code})"


def _refused_as(code: str) -> type[EnvelopeError]:
    """An error about the key or the blob (so this envelope's own), or ProviderUnavailable:
    KMS unreachable, failing or refusing the caller, whichever key it is asked about."""
    about_the_key = code in (*_UNKNOWN_KEY, *_UNUSABLE_KEY, *_BAD_BLOB) or code.startswith(
        "UnauthorizedOperation"  # the run role not allowed this key
    )
    return EnvelopeError if about_the_key else ProviderUnavailable


class KmsKeys:
    provider = PROVIDER

    def __init__(self, access: cloud_clients.CloudAccess, key_id: str) -> None:
        self.key_id = key_id  # empty: this instance only opens
        self._access = access
        self._client: Any = None
        self._lock = threading.Lock()

    def generate(self, context: str) -> DataKey:
        from tencentcloud.kms.v20190118 import models  # cold start: the KMS SDK, on use

        if not self.key_id:
            raise EnvelopeError("KMS_KEY_ID is unset: CRYPTO_PROVIDER=kms seals under it")
        request = models.GenerateDataKeyRequest()
        request.KeyId = self.key_id
        request.KeySpec = "AES_256"
        request.EncryptionContext = encryption_context(context)
        answer = self._call("GenerateDataKey", request, self.key_id)
        return DataKey(
            plaintext=_plaintext(answer.Plaintext),
            wrapped=pack_blob(answer.CiphertextBlob),
            key_id=answer.KeyId or self.key_id,
            provider=PROVIDER,
        )

    def unwrap(self, key_id: str, wrapped: bytes, context: str) -> bytes:
        from tencentcloud.kms.v20190118 import models  # cold start: the KMS SDK, on use

        request = models.DecryptRequest()
        request.CiphertextBlob = unpack_blob(wrapped)
        request.EncryptionContext = encryption_context(context)
        answer = self._call("Decrypt", request, key_id)
        if answer.KeyId and answer.KeyId != key_id:
            raise EnvelopeError(f"tampered: the data key is {answer.KeyId}'s, not {key_id}'s")
        return _plaintext(answer.Plaintext)

    def _call(self, action: str, request: Any, key_id: str) -> Any:
        from tencentcloud.common.exception import TencentCloudSDKException  # cold start: SDK

        try:
            return getattr(self._kms(), action)(request)
        except TencentCloudSDKException as error:
            code = error.get_code() or ""
            raise _refused_as(code)(refusal(code, key_id)) from None

    def _kms(self) -> Any:
        from tencentcloud.kms.v20190118 import kms_client  # cold start: the KMS SDK, on use

        with self._lock:
            if self._client is None:
                self._client = cloud_clients.build(kms_client.KmsClient, self._access)
            return self._client


def _plaintext(text: str | None) -> bytes:
    try:
        return base64.b64decode(text or "", validate=True)
    except (binascii.Error, ValueError):
        raise EnvelopeError("KMS answered a data key that is not base64") from None
