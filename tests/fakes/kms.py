"""A fake Tencent Cloud KMS (2019-01-18) on the TC3-checking FakeTencentCloud: GenerateDataKey,
Decrypt and Encrypt, every request first checked against KMS's official schema
(tests/fakes/schemas/kms).

- Keys are created with `create_key()` (a CMK id, as KMS gives them) and refused by id when
  unknown (`ResourceUnavailable.CmkNotFound`) or disabled with `disable(key_id)`
  (`ResourceUnavailable.CmkDisabled`), KMS's own codes
  (tencentcloud.kms.v20190118.errorcodes).
- A CiphertextBlob is opaque and self-contained, shaped and sized like KMS's own (three
  base64 parts joined by `-k-`, 210 characters for a 32-byte data key, as in KMS's API
  examples): the key id, a nonce, and the data key sealed under the fake's root key with the
  key id and the encryption context as associated data, then a 20-byte check. Decrypt finds
  the key from the blob, as KMS does, and refuses a blob that is not one
  (`InvalidParameterValue.InvalidCiphertext`) or one asked for under another
  EncryptionContext, or altered (`FailedOperation.DecryptError`).
- `fail_next(action, times)`: the next `times` requests of that action answer `InternalError`
  (KMS having a bad moment), then the fake answers as before.
- `hold(action, name)`: the next request of that action under the encryption context
  `{"name": name}` waits, once it has arrived, until the test lets it go (KMS slow for one
  call, for a test that needs another call to overtake it).
- `stall(action)`: every request of that action waits, once it has arrived, until the test
  sets the event it returns (KMS slow for everyone).
- Every plaintext it is given or hands out (a data key, what Encrypt seals) is a secret no
  log line may hold (tests.support.log_guard).
- `count(action)` is how many requests of that action reached the fake; `calls(action,
  name)` are those under the encryption context `{"name": name}`, each with when it
  arrived (`Call.at`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from tests.fakes import api_schema
from tests.fakes.tencentcloud import Call, FakeTencentCloud, Handler, TencentCloudError
from tests.support import log_guard

SCHEMA = api_schema.load("kms", "v20190118")
SEPARATOR = "-k-"
KEY_ID_BYTES = 64
CHECK_BYTES = 20
MAX_CONTEXT_CHARS = 1024
MAX_ENCRYPT_BYTES = 4096
KEY_SPECS = {"AES_128": 16, "AES_256": 32}


HOLD_LIMIT_S = 30  # a held request answers at the latest after this, held or not


@dataclass
class Held:
    """One request kept waiting: `arrived` is set when it reached the fake, and it goes on
    once `release` is set."""

    arrived: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)


class FakeKms:
    def __init__(self, cloud: FakeTencentCloud) -> None:
        self.cloud = cloud
        self.keys: dict[str, bool] = {}  # key id -> enabled
        self._root = AESGCM(AESGCM.generate_key(bit_length=256))
        self._check_key = os.urandom(32)
        self._lock = threading.Lock()
        self._failing: dict[str, int] = {}  # action -> requests still to fail
        self._held: dict[tuple[str, str], Held] = {}  # (action, context name) -> next one
        self._stalled: dict[str, threading.Event] = {}  # action -> set when they may go on
        cloud.validate_with("kms", SCHEMA.validate)
        cloud.on(
            "GenerateDataKey", self._unless_failing("GenerateDataKey", self._generate_data_key)
        )
        cloud.on("Decrypt", self._unless_failing("Decrypt", self._decrypt))
        cloud.on("Encrypt", self._unless_failing("Encrypt", self._encrypt))

    # ------------------------------------------------------------ set-up

    def create_key(self) -> str:
        key_id = str(uuid.uuid4())
        with self._lock:
            self.keys[key_id] = True
        return key_id

    def disable(self, key_id: str) -> None:
        with self._lock:
            self.keys[key_id] = False

    def fail_next(self, action: str, times: int = 1) -> None:
        with self._lock:
            self._failing[action] = times

    def hold(self, action: str, name: str) -> Held:
        held = Held()
        with self._lock:
            self._held[(action, name)] = held
        return held

    def stall(self, action: str) -> threading.Event:
        release = threading.Event()
        with self._lock:
            self._stalled[action] = release
        return release

    def count(self, action: str) -> int:
        return len(self.cloud.calls_of(action))

    def calls(self, action: str, name: str) -> list[Call]:
        return [
            call
            for call in self.cloud.calls_of(action)
            if _context_name(call.params.get("EncryptionContext")) == name
        ]

    def env(self, key_id: str) -> dict[str, str]:
        """Settings that seal under `key_id` of this fake."""
        return {
            **self.cloud.env(),
            "CRYPTO_PROVIDER": "kms",
            "KMS_KEY_ID": key_id,
            "TENCENTCLOUD_REGION": "ap-guangzhou",
        }

    # ------------------------------------------------------------ actions

    def _generate_data_key(self, params: dict[str, Any], _call: Call) -> dict[str, Any]:
        key_id = self._usable(params["KeyId"])
        if "NumberOfBytes" in params:
            size = params["NumberOfBytes"]
            if not 1 <= size <= 1024:
                raise TencentCloudError("InvalidParameterValue", "NumberOfBytes is 1 to 1024")
        elif params.get("KeySpec") in KEY_SPECS:
            size = KEY_SPECS[params["KeySpec"]]
        else:
            raise TencentCloudError("InvalidParameterValue", "KeySpec is AES_128 or AES_256")
        plaintext = base64.b64encode(os.urandom(size)).decode()
        log_guard.remember(plaintext)
        return {
            "KeyId": key_id,
            "Plaintext": plaintext,
            "CiphertextBlob": self._seal(
                key_id, base64.b64decode(plaintext), params.get("EncryptionContext")
            ),
        }

    def _encrypt(self, params: dict[str, Any], _call: Call) -> dict[str, Any]:
        key_id = self._usable(params["KeyId"])
        log_guard.remember(params["Plaintext"])
        try:
            plaintext = base64.b64decode(params["Plaintext"], validate=True)
        except (binascii.Error, ValueError):
            raise TencentCloudError(
                "InvalidParameterValue.InvalidPlaintext", "not base64"
            ) from None
        if len(plaintext) > MAX_ENCRYPT_BYTES:
            raise TencentCloudError("InvalidParameterValue.InvalidPlaintext", "over 4096 bytes")
        blob = self._seal(key_id, plaintext, params.get("EncryptionContext"))
        return {"KeyId": key_id, "CiphertextBlob": blob}

    def _decrypt(self, params: dict[str, Any], _call: Call) -> dict[str, Any]:
        try:
            head, nonce, sealed = (
                base64.b64decode(part, validate=True)
                for part in params["CiphertextBlob"].split(SEPARATOR)
            )
            key_id = head.rstrip(b"\0").decode()
        except (binascii.Error, ValueError):
            raise TencentCloudError(
                "InvalidParameterValue.InvalidCiphertext", "the ciphertext is malformed"
            ) from None
        if len(head) != KEY_ID_BYTES or len(nonce) != 16:
            raise TencentCloudError(
                "InvalidParameterValue.InvalidCiphertext", "the ciphertext is malformed"
            )
        self._usable(key_id)
        context = _context(params.get("EncryptionContext"))
        sealed, check = sealed[:-CHECK_BYTES], sealed[-CHECK_BYTES:]
        try:
            if not hmac.compare_digest(check, self._check(head, nonce, sealed)):
                raise InvalidTag
            plaintext = self._root.decrypt(nonce[:12], sealed, head + context)
        except InvalidTag:
            raise TencentCloudError("FailedOperation.DecryptError", "decrypt failed") from None
        opened = base64.b64encode(plaintext).decode()
        log_guard.remember(opened)  # the same as GenerateDataKey's, unless Encrypt sealed it
        return {"KeyId": key_id, "Plaintext": opened}

    # ------------------------------------------------------------ helpers

    def _unless_failing(self, action: str, handler: Handler) -> Handler:
        def handle(params: dict[str, Any], call: Call) -> dict[str, Any]:
            name = _context_name(params.get("EncryptionContext"))
            with self._lock:
                held = self._held.pop((action, name), None)
                stalled = self._stalled.get(action)
            if held is not None:
                held.arrived.set()
                held.release.wait(HOLD_LIMIT_S)
            if stalled is not None:
                stalled.wait(HOLD_LIMIT_S)
            with self._lock:
                failing = self._failing.get(action, 0)
                if failing:
                    self._failing[action] = failing - 1
            if failing:
                raise TencentCloudError("InternalError", "internal error, try again")
            return handler(params, call)

        return handle

    def _usable(self, key_id: str) -> str:
        with self._lock:
            enabled = self.keys.get(key_id)
        if enabled is None:
            raise TencentCloudError("ResourceUnavailable.CmkNotFound", f"{key_id} not found")
        if not enabled:
            raise TencentCloudError("ResourceUnavailable.CmkDisabled", f"{key_id} is disabled")
        return key_id

    def _seal(self, key_id: str, plaintext: bytes, encryption_context: str | None) -> str:
        head = key_id.encode().ljust(KEY_ID_BYTES, b"\0")
        nonce = os.urandom(16)
        sealed = self._root.encrypt(nonce[:12], plaintext, head + _context(encryption_context))
        sealed += self._check(head, nonce, sealed)
        return SEPARATOR.join(base64.b64encode(part).decode() for part in (head, nonce, sealed))

    def _check(self, head: bytes, nonce: bytes, sealed: bytes) -> bytes:
        return hmac.new(self._check_key, head + nonce + sealed, hashlib.sha1).digest()


def _context_name(text: str | None) -> str:
    """The `name` of an encryption context (what the app binds), or "" without one."""
    try:
        pairs = json.loads(text or "{}")
    except ValueError:
        return ""
    return str(pairs.get("name", "")) if isinstance(pairs, dict) else ""


def _context(text: str | None) -> bytes:
    """The EncryptionContext as KMS compares it: the key-value pairs, not their spelling."""
    if not text:
        return b""
    try:
        pairs = json.loads(text)
    except ValueError:
        pairs = None
    if len(text) > MAX_CONTEXT_CHARS or not isinstance(pairs, dict):
        raise TencentCloudError(
            "InvalidParameterValue", "EncryptionContext is a JSON object of at most 1024 chars"
        )
    return json.dumps(pairs, sort_keys=True, separators=(",", ":")).encode()
