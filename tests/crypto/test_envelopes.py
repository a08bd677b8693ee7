"""Envelopes with both providers: what seals opens under its own name only, with its own
key only, not after any change to any character; KMS is called as its schema says, with the
name bound as the encryption context, once per data key and process; and every refusal
names its reason without the value."""

from __future__ import annotations

import base64
import json
import secrets

import pytest

from app.config import Settings
from app.crypto import envelopes
from app.crypto import kms as kms_provider
from app.crypto.envelopes import EnvelopeError
from tests.crypto.conftest import keys_for, new_master_key
from tests.fakes.kms import FakeKms

JWT = secrets.token_urlsafe(64)  # 86 characters, as `openssl rand -base64 64` less padding


@pytest.fixture(params=["local", "kms"])
def env(request: pytest.FixtureRequest, local_env: dict[str, str], kms_env: dict[str, str]):
    return local_env if request.param == "local" else kms_env


def test_what_is_sealed_opens_under_its_name(env: dict[str, str]) -> None:
    keys = keys_for(env)
    for value in (JWT.encode(), b"x", "多字节 text\n".encode(), bytes(range(256)) * 8):
        envelope = envelopes.seal(value, "JWT_SECRET", keys)
        assert envelopes.is_envelope(envelope) and envelope.startswith("enc:v1:")
        assert "=" not in envelope and "\n" not in envelope
        assert envelopes.open(envelope, "JWT_SECRET", keys) == value
        assert envelopes.key_id_of(envelope) == keys.key_id


def test_each_seal_takes_a_fresh_data_key_and_nonce(env: dict[str, str]) -> None:
    keys = keys_for(env)
    first, second = (envelopes.seal(b"same", "WECHAT_SECRET", keys) for _ in range(2))
    assert first != second
    assert _wrapped(first) != _wrapped(second)
    assert _raw(first)[-(12 + 4 + 16) : -20] != _raw(second)[-(12 + 4 + 16) : -20]


def test_an_envelope_moved_to_another_name_does_not_open(env: dict[str, str]) -> None:
    keys = keys_for(env)
    envelope = envelopes.seal(JWT.encode(), "JWT_SECRET", keys)
    with pytest.raises(EnvelopeError, match="sealed for another name") as refused:
        envelopes.open(envelope, "WECHAT_SECRET", keys)
    assert JWT not in str(refused.value)


def test_any_changed_character_stops_it(env: dict[str, str]) -> None:
    keys = keys_for(env)
    envelope = envelopes.seal(JWT.encode(), "JWT_SECRET", keys)
    body = len(envelopes.PREFIX)
    for at in range(body, len(envelope)):
        for other in {"A", "B", "-", "_"} - {envelope[at]}:
            tampered = envelope[:at] + other + envelope[at + 1 :]
            with pytest.raises(EnvelopeError) as refused:
                envelopes.open(tampered, "JWT_SECRET", keys)
            assert JWT not in str(refused.value)
            break
    for cut in (envelope[:-1], envelope[:40], envelope + "A", envelope[:-2] + "=="):
        with pytest.raises(EnvelopeError):
            envelopes.open(cut, "JWT_SECRET", keys)


def test_a_changed_ciphertext_byte_is_named_tampered(env: dict[str, str]) -> None:
    keys = keys_for(env)
    envelope = envelopes.seal(JWT.encode(), "JWT_SECRET", keys)
    raw = bytearray(_raw(envelope))
    raw[-20] ^= 1
    with pytest.raises(EnvelopeError, match="tampered"):
        envelopes.open(_text(bytes(raw)), "JWT_SECRET", keys)


def test_an_envelope_of_another_master_key_is_an_unknown_key(local_env: dict[str, str]) -> None:
    envelope = envelopes.seal(JWT.encode(), "JWT_SECRET", keys_for(local_env))
    other = keys_for({**local_env, "LOCAL_MASTER_KEY": new_master_key()})
    with pytest.raises(EnvelopeError, match=r"unknown key local-[0-9a-f]{16}"):
        envelopes.open(envelope, "JWT_SECRET", other)
    # Outside a laptop nothing stands in for an unset master key.
    without = keys_for({"CRYPTO_PROVIDER": "local", "APP_ENV": "test"})
    with pytest.raises(EnvelopeError, match="LOCAL_MASTER_KEY is unset"):
        envelopes.open(envelope, "JWT_SECRET", without)


def test_a_laptop_seals_under_the_public_dev_master_key_when_none_is_set() -> None:
    from app.config.defaults import DEV_LOCAL_MASTER_KEY

    laptop = Settings.from_environ({}, resolve=False)
    assert laptop.local_master_key.get_secret_value() == DEV_LOCAL_MASTER_KEY
    sealed = envelopes.seal(b"x", "JWT_SECRET", keys_for({}))
    assert envelopes.open(sealed, "JWT_SECRET", keys_for({})) == b"x"
    staging = Settings.from_environ({"APP_ENV": "test"}, resolve=False)
    assert staging.local_master_key.get_secret_value() == ""


@pytest.mark.parametrize("text", ["", "short", "not base64 at all!", "A" * 43 + "%"])
def test_a_master_key_that_is_not_32_bytes_of_base64_is_refused_without_itself(
    text: str,
) -> None:
    with pytest.raises(EnvelopeError, match="LOCAL_MASTER_KEY") as refused:
        envelopes.seal(b"x", "JWT_SECRET", keys_for({"LOCAL_MASTER_KEY": text or " "}))
    assert not text or text not in str(refused.value)


def test_a_master_key_may_be_standard_or_url_safe_base64_with_or_without_padding() -> None:
    key = secrets.token_bytes(32)
    spellings = {
        base64.b64encode(key).decode(),
        base64.b64encode(key).decode().rstrip("="),
        base64.urlsafe_b64encode(key).decode(),
        base64.urlsafe_b64encode(key).decode().rstrip("="),
    }
    sealed = envelopes.seal(b"v", "N", keys_for({"LOCAL_MASTER_KEY": spellings.pop()}))
    for spelling in spellings:
        assert envelopes.open(sealed, "N", keys_for({"LOCAL_MASTER_KEY": spelling})) == b"v"


def test_an_envelope_of_an_unknown_or_disabled_kms_key_is_refused_by_name(kms: FakeKms) -> None:
    retired = kms.create_key()
    keys = keys_for(kms.env(retired))
    envelope = envelopes.seal(JWT.encode(), "JWT_SECRET", keys)
    kms.disable(retired)
    fresh = keys_for({**kms.env(retired), "TENCENTCLOUD_REGION": "ap-shanghai"})
    with pytest.raises(EnvelopeError, match=f"key {retired} is disabled.*CmkDisabled"):
        envelopes.open(envelope, "JWT_SECRET", fresh)
    del kms.keys[retired]
    with pytest.raises(EnvelopeError, match=f"unknown key {retired}.*CmkNotFound"):
        envelopes.open(envelope, "JWT_SECRET", fresh)
    with pytest.raises(EnvelopeError, match=f"unknown key {retired}.*CmkNotFound"):
        envelopes.seal(b"x", "JWT_SECRET", fresh)


def test_kms_is_asked_under_the_name_and_refuses_another(
    kms: FakeKms, kms_env: dict[str, str]
) -> None:
    keys = keys_for(kms_env)
    before = len(kms.cloud.calls_of("GenerateDataKey"))
    envelope = envelopes.seal(b"value", "WECHAT_SECRET", keys)
    call = kms.cloud.calls_of("GenerateDataKey")[before]
    assert call.service == "kms" and call.version == "2019-01-18"
    assert call.params["KeySpec"] == "AES_256"
    assert json.loads(call.params["EncryptionContext"]) == {"name": "WECHAT_SECRET"}
    # A forged header naming another context check still meets KMS's own binding.
    raw = bytearray(_raw(envelope))
    n = raw[2]
    raw[3 + n : 7 + n] = envelopes._check("JWT_SECRET")
    with pytest.raises(EnvelopeError, match="DecryptError"):
        envelopes.open(_text(bytes(raw)), "JWT_SECRET", keys)


def test_kms_sees_one_decrypt_per_envelope_per_process(
    kms: FakeKms, kms_env: dict[str, str]
) -> None:
    sealed = [
        envelopes.seal(v, "DATABASE_URL", keys_for({**kms_env, "TENCENTCLOUD_REGION": "x"}))
        for v in (b"one", b"two")
    ]
    before = kms.count("Decrypt")
    for _ in range(5):
        keys = keys_for(kms_env)  # settings read again: the same DataKeys
        assert [envelopes.open(e, "DATABASE_URL", keys) for e in sealed] == [b"one", b"two"]
    assert kms.count("Decrypt") - before == 2
    # What this process sealed itself it already holds.
    own = envelopes.seal(b"three", "DATABASE_URL", keys_for(kms_env))
    assert envelopes.open(own, "DATABASE_URL", keys_for(kms_env)) == b"three"
    assert kms.count("Decrypt") - before == 2


def test_kms_without_a_key_id_or_credentials_says_which(kms_env: dict[str, str]) -> None:
    with pytest.raises(EnvelopeError, match="KMS_KEY_ID is unset"):
        envelopes.seal(b"x", "JWT_SECRET", keys_for({**kms_env, "KMS_KEY_ID": ""}))
    with pytest.raises(EnvelopeError, match="KMS_KEY_ID is unset"):
        _ = keys_for({**kms_env, "KMS_KEY_ID": ""}).key_id
    no_credentials = {k: v for k, v in kms_env.items() if not k.startswith("TENCENTCLOUD_SECRET")}
    with pytest.raises(EnvelopeError, match="no Tencent Cloud credentials"):
        envelopes.seal(b"x", "JWT_SECRET", keys_for(no_credentials))
    wrong = {**kms_env, "TENCENTCLOUD_SECRET_KEY": "not-the-key"}
    with pytest.raises(EnvelopeError, match=r"credentials.*AuthFailure\.SignatureFailure"):
        envelopes.seal(b"x", "JWT_SECRET", keys_for(wrong))


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("plain-value", "not an envelope"),
        ("enc:v2:AAAA", "version v2"),
        ("enc:v1:", "truncated"),
        ("enc:v1:AQ", "truncated"),
        ("enc:v1:not*base64", "not base64url"),
        ("enc:v1:" + base64.urlsafe_b64encode(b"\x02" * 64).decode().rstrip("="), "version 2"),
        ("enc:v1:" + base64.urlsafe_b64encode(b"\x01\x09" * 32).decode(), "not canonical"),
    ],
)
def test_a_malformed_envelope_is_named_so(
    local_env: dict[str, str], text: str, reason: str
) -> None:
    with pytest.raises(EnvelopeError, match=reason):
        envelopes.open(text, "JWT_SECRET", keys_for(local_env))


def test_the_kms_blob_is_packed_exactly_and_falls_back_to_text() -> None:
    real_shape = "-k-".join(base64.b64encode(secrets.token_bytes(n)).decode() for n in (64, 16, 68))
    assert len(real_shape) == 210
    packed = kms_provider.pack_blob(real_shape)
    assert len(packed) == 2 + 3 + 64 + 16 + 68
    assert kms_provider.unpack_blob(packed) == real_shape
    for odd in ("opaque-text", "QUJD-k-QQ", "QUJD", "", "QUJD==-k-"):
        assert kms_provider.unpack_blob(kms_provider.pack_blob(odd)) == odd
    for broken in (b"\x01\x02\x05ab", b"\x07", b"\x01\x01\x03abcd"):
        with pytest.raises(EnvelopeError, match="malformed"):
            kms_provider.unpack_blob(broken)


def test_envelope_sizes_of_a_jwt_secret(local_env: dict[str, str], kms_env: dict[str, str]) -> None:
    """README "Secrets and KMS" quotes these: the fake's blob has the size of KMS's own."""
    local = envelopes.seal(JWT.encode(), "JWT_SECRET", keys_for(local_env))
    kms = envelopes.seal(JWT.encode(), "JWT_SECRET", keys_for(kms_env))
    # 7 + 4/3 x (37 + key id + wrapped key + value): ids of 22 and 36, wrapped 16 and 153
    assert len(local) == 7 + _b64_len(37 + 22 + 16 + 86) == 222
    assert len(kms) == 7 + _b64_len(37 + 36 + 153 + 86) == 423


def _raw(envelope: str) -> bytes:
    body = envelope[len(envelopes.PREFIX) :]
    return base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))


def _wrapped(envelope: str) -> bytes:
    raw = _raw(envelope)
    n = raw[2]
    m = int.from_bytes(raw[7 + n : 9 + n], "big")
    return raw[9 + n : 9 + n + m]


def _text(raw: bytes) -> str:
    return envelopes.PREFIX + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _b64_len(n: int) -> int:
    return (4 * n + 2) // 3
