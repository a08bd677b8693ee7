"""The COS adapter through cos-python-sdk-v5 against FakeCos, which verifies every signature:
objects, paged listings, batch deletes, lifecycle, presigned URLs used by a client that has
no credentials, and failures turned into StorageError without a secret in the text."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from app.config import get_settings
from app.storage import cos as adapter
from app.storage.objects import KeyFailure, StorageError
from app.storage.store import store
from tests.fakes.cos import FakeCos
from tests.support.net import closed_port
from tests.support.settings import settings_env


def bucket() -> adapter.CosStore:
    return adapter.from_settings(get_settings())


def assert_no_secret(error: BaseException, fake: FakeCos) -> None:
    text = f"{error} {error!r}"
    assert fake.secret_key not in text
    assert "q-signature" not in text and "q-sign-time" not in text
    if fake.session_token:
        assert fake.session_token not in text


# ------------------------------------------------------------ objects


def test_put_then_head_gives_the_size_and_time(cos: FakeCos) -> None:
    before = datetime.now(timezone.utc).replace(microsecond=0)
    bucket().put("tasks/t1/out.json", b'{"a": 1}', "application/json")
    info = bucket().head("tasks/t1/out.json")
    assert info is not None
    assert info.size_bytes == 8
    assert before <= info.last_modified <= datetime.now(timezone.utc)
    assert cos.data("tasks/t1/out.json") == b'{"a": 1}'
    assert bucket().head("tasks/t1/missing.json") is None
    assert cos.count("PutObject") == 1 and cos.count("HeadObject") == 2


def test_head_gives_the_storage_class_cos_answers(cos: FakeCos) -> None:
    """COS names the class only for an object not STANDARD; the adapter reads the header in
    any case."""
    upload = bucket().presign_put("uploads/u1/a", "image/png", 5, 900)
    archived = upload.headers | {"X-Cos-Storage-Class": "ARCHIVE"}
    assert requests.put(upload.url, data=b"12345", headers=archived, timeout=10).ok
    bucket().put("tasks/t1/out.json", b"{}", "application/json")
    found = bucket().head("uploads/u1/a")
    assert found is not None and found.storage_class == "ARCHIVE"
    plain = bucket().head("tasks/t1/out.json")
    assert plain is not None and plain.storage_class == "STANDARD"


def test_store_is_built_once_for_the_settings(cos: FakeCos) -> None:
    first = store()
    assert store() is first
    assert cos.secret_key not in repr(first)
    with settings_env(COS_BUCKET="another-1250000000"):
        assert store() is not first


# ------------------------------------------------------------ listing


def test_listing_pages_with_the_marker_cos_gives(cos: FakeCos) -> None:
    old = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    for i in range(7):
        cos.plant(f"tasks/t{i}/out.json", b"x" * i, last_modified=old + timedelta(hours=i))
    cos.plant("uploads/u1/a", b"upload")
    pages = []
    marker = None
    while True:
        page = bucket().listing("tasks/", marker, max_keys=3)
        pages.append(page.objects)
        marker = page.next_marker
        if marker is None:
            break
    assert [len(objects) for objects in pages] == [3, 3, 1]
    listed = [o for objects in pages for o in objects]
    assert [o.key for o in listed] == [f"tasks/t{i}/out.json" for i in range(7)]
    assert [o.size_bytes for o in listed] == list(range(7))
    assert [o.last_modified for o in listed] == [old + timedelta(hours=i) for i in range(7)]
    assert cos.count("ListObjects") == 3


# ------------------------------------------------------------ deleting


def test_delete_is_one_request_with_each_key_accounted_for(cos: FakeCos) -> None:
    keys = [f"tasks/t/{i}" for i in range(5)]
    for key in keys:
        cos.plant(key, b"1")
    cos.refuse_keys(["tasks/t/3"], code="AccessDenied")
    result = bucket().delete(keys)
    assert sorted(result.deleted) == ["tasks/t/0", "tasks/t/1", "tasks/t/2", "tasks/t/4"]
    assert result.failed == [KeyFailure("tasks/t/3", "AccessDenied")]
    assert cos.keys("tasks/") == ["tasks/t/3"]
    assert cos.count("DeleteObjects") == 1


def test_delete_refuses_more_than_one_batch_and_sends_nothing_for_none(cos: FakeCos) -> None:
    assert bucket().delete([]).deleted == []
    with pytest.raises(ValueError, match="at most 1000"):
        bucket().delete([f"k{i}" for i in range(1001)])
    assert cos.count("DeleteObjects") == 0


def test_a_full_batch_of_1000_goes_in_one_request(cos: FakeCos) -> None:
    keys = [f"uploads/u/{i:04d}" for i in range(1000)]
    for key in keys:
        cos.plant(key, b"12")
    result = bucket().delete(keys)
    assert len(result.deleted) == 1000 and result.failed == []
    assert cos.keys("uploads/") == []
    assert cos.count("DeleteObjects") == 1


# ------------------------------------------------------------ lifecycle


def test_lifecycle_round_trip(cos: FakeCos) -> None:
    assert bucket().lifecycle() == []
    rules = [
        {
            "ID": "ai-platform-tasks",
            "Filter": {"Prefix": "tasks/"},
            "Status": "Enabled",
            "Expiration": {"Days": 30},
            "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1},
        },
        {
            "ID": "logs",
            "Filter": {"Prefix": "logs/"},
            "Status": "Enabled",
            "Expiration": {"Days": 7},
        },
    ]
    bucket().put_lifecycle(rules)
    read = bucket().lifecycle()
    assert [rule["ID"] for rule in read] == ["ai-platform-tasks", "logs"]
    assert read[0]["Filter"] == {"Prefix": "tasks/"}
    assert read[0]["Expiration"] == {"Days": "30"}
    assert read[0]["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": "1"}
    assert [r["Prefix"] for r in cos.lifecycle_rules()] == ["tasks/", "logs/"]
    bucket().put_lifecycle([])
    assert bucket().lifecycle() == []


# ------------------------------------------------------------ presigned URLs


def test_a_presigned_put_with_its_headers_uploads_and_a_presigned_get_reads(cos: FakeCos) -> None:
    data = b"\x89PNG fake image bytes"
    upload = bucket().presign_put("uploads/u1/abc", "image/png", len(data), 900)
    assert upload.method == "PUT"
    assert upload.headers == {
        "Content-Type": "image/png",
        "Content-Length": str(len(data)),
        "x-cos-acl": "private",
    }
    assert cos.secret_key not in upload.url
    now = datetime.now(timezone.utc)
    assert now + timedelta(seconds=890) < upload.expires_at <= now + timedelta(seconds=900)
    reply = requests.put(upload.url, data=data, headers=upload.headers, timeout=10)
    assert reply.status_code == 200, reply.text
    assert cos.data("uploads/u1/abc") == data
    assert cos.acl("uploads/u1/abc") == {"x-cos-acl": "private"}
    anonymous = f"http://{cos.endpoint}/{cos.bucket}/uploads/u1/abc"
    assert requests.get(anonymous, timeout=10).status_code == 403

    download = bucket().presign_get("uploads/u1/abc", 3600)
    assert download.method == "GET" and download.headers == {}
    reply = requests.get(download.url, timeout=10)
    assert reply.status_code == 200 and reply.content == data


@pytest.mark.parametrize(
    ("content_type", "body"),
    [("image/jpeg", b"12345"), ("image/png", b"123456"), ("image/png", b"1234")],
    ids=["another-type", "larger", "smaller"],
)
def test_a_presigned_put_refuses_another_type_or_size(
    cos: FakeCos, content_type: str, body: bytes
) -> None:
    upload = bucket().presign_put("uploads/u1/abc", "image/png", 5, 900)
    reply = requests.put(upload.url, data=body, headers={"Content-Type": content_type}, timeout=10)
    assert reply.status_code == 403
    assert "<Code>SignatureDoesNotMatch</Code>" in reply.text
    assert cos.data("uploads/u1/abc") is None
    # the same URL with its own headers still works: the refusal was the headers'
    ok = requests.put(upload.url, data=b"12345", headers=upload.headers, timeout=10)
    assert ok.status_code == 200


@pytest.mark.parametrize(
    "acl", ["public-read", "public-read-write", "default", None], ids=lambda acl: str(acl)
)
def test_a_presigned_put_refuses_another_acl_or_none(cos: FakeCos, acl: str | None) -> None:
    """`x-cos-acl` is signed: the holder of the URL cannot make the upload public with it."""
    upload = bucket().presign_put("uploads/u1/abc", "image/png", 5, 900)
    headers = {k: v for k, v in upload.headers.items() if k != "x-cos-acl"}
    if acl is not None:
        headers["x-cos-acl"] = acl
    reply = requests.put(upload.url, data=b"12345", headers=headers, timeout=10)
    assert reply.status_code == 403
    assert "<Code>SignatureDoesNotMatch</Code>" in reply.text
    assert cos.data("uploads/u1/abc") is None


def test_an_object_made_public_is_read_without_a_signature(cos: FakeCos) -> None:
    """What the tests' COS does with an ACL that lets all users read, as COS does: a header
    the signature does not list is not checked, and an upload made so is anyone's to
    download (the bucket policy of app.storage.bucket_policy is what refuses it)."""
    upload = bucket().presign_put("uploads/u1/abc", "image/png", 5, 900)
    anonymous = f"http://{cos.endpoint}/{cos.bucket}/uploads/u1/abc"
    everyone = {"x-cos-grant-read": 'uri="http://cam.qcloud.com/groups/global/AllUsers"'}
    reply = requests.put(upload.url, data=b"12345", headers=upload.headers | everyone, timeout=10)
    assert reply.status_code == 200, reply.text
    assert cos.acl("uploads/u1/abc") == {"x-cos-acl": "private"} | everyone
    reply = requests.get(anonymous, timeout=10)
    assert reply.status_code == 200 and reply.content == b"12345"


@pytest.mark.parametrize(
    ("grant", "public"),
    [
        ({}, False),
        ({"x-cos-grant-read": 'uri="http://cam.qcloud.com/groups/global/AllUsers"'}, True),
        ({"x-cos-grant-full-control": 'id="qcs::cam::anyone:anyone"'}, True),
        ({"x-cos-grant-read-acp": 'uri="http://cam.qcloud.com/groups/global/AllUsers"'}, False),
        ({"x-cos-grant-read": 'id="100000000002"'}, False),
    ],
    ids=["private", "read-all-users", "full-control-anyone", "read-acp-only", "one-account"],
)
def test_public_says_whether_all_users_may_read(
    cos: FakeCos, grant: dict[str, str], public: bool
) -> None:
    assert bucket().public("uploads/u1/abc") is None
    upload = bucket().presign_put("uploads/u1/abc", "image/png", 5, 900)
    reply = requests.put(upload.url, data=b"12345", headers=upload.headers | grant, timeout=10)
    assert reply.status_code == 200, reply.text
    assert bucket().public("uploads/u1/abc") is public
    assert bucket().public("uploads/u1/abc", timeout_s=2.0) is public
    assert cos.count("GetObjectACL") == 3


# ------------------------------------------------------------ bucket policy


def test_policy_round_trip(cos: FakeCos) -> None:
    assert bucket().policy() is None
    document = {
        "version": "2.0",
        "Statement": [
            {
                "Effect": "allow",
                "Principal": {"qcs": ["qcs::cam::uin/100000000001:uin/100000000002"]},
                "Action": ["name/cos:GetObject"],
                "Resource": ["qcs::cos:ap-guangzhou:uid/1250000000:b-1250000000/logs/*"],
            }
        ],
    }
    bucket().put_policy(document)
    assert bucket().policy() == document == cos.policy()
    assert cos.count("PutBucketPolicy") == 1 and cos.count("GetBucketPolicy") == 2


def test_a_policy_read_of_a_missing_bucket_is_an_error_not_no_policy(cos: FakeCos) -> None:
    cos.fail_next("GetBucketPolicy", 404, code="NoSuchBucket")
    with pytest.raises(StorageError, match=r"^COS GetBucketPolicy failed: 404 NoSuchBucket$"):
        bucket().policy()
    assert bucket().policy() is None


def test_a_presigned_url_is_refused_once_expired_or_altered(cos: FakeCos) -> None:
    cos.plant("tasks/t1/out.json", b"{}")
    download = bucket().presign_get("tasks/t1/out.json", 60)
    assert requests.get(download.url, timeout=10).status_code == 200
    other_key = download.url.replace("tasks/t1/out.json", "tasks/t2/out.json")
    assert requests.get(other_key, timeout=10).status_code == 403
    cos.advance(61)
    reply = requests.get(download.url, timeout=10)
    assert reply.status_code == 403
    assert "<Code>AccessDenied</Code>" in reply.text and "expired" in reply.text


def test_a_presigned_url_is_good_until_the_expires_at_it_is_given_with(cos: FakeCos) -> None:
    """The SDK signs to a whole second (`int(time.time())` plus the TTL): the `expires_at` a
    client is told is never after the end the signature carries, so a URL used just before
    it is not refused as expired."""
    for made in (
        bucket().presign_get("tasks/t1/out.json", 3600),
        bucket().presign_put("uploads/u1/abc", "image/png", 5, 900),
    ):
        signed = parse_qs(urlsplit(made.url).query)
        ends = int(signed["q-sign-time"][0].split(";")[1])
        assert made.expires_at <= datetime.fromtimestamp(ends, timezone.utc)
        assert made.expires_at.microsecond == 0


def test_requests_signed_with_another_key_are_refused(cos: FakeCos) -> None:
    with (
        settings_env(TENCENTCLOUD_SECRET_KEY="not-the-key"),
        pytest.raises(StorageError) as refused,
    ):
        bucket().put("tasks/t1/out.json", b"{}", "application/json")
    assert str(refused.value) == "COS PutObject failed: 403 SignatureDoesNotMatch"
    assert "not-the-key" not in str(refused.value)
    assert cos.data("tasks/t1/out.json") is None


def test_a_session_token_is_sent_and_signed_into_presigned_urls() -> None:
    with FakeCos(session_token="tok-" + "z" * 40) as fake, settings_env(**fake.settings()):
        bucket().put("tasks/t1/out.json", b"{}", "application/json")
        url = bucket().presign_get("tasks/t1/out.json", 60).url
        assert requests.get(url, timeout=10).content == b"{}"
        without_token = settings_env(TENCENTCLOUD_SESSION_TOKEN=None)
        with without_token, pytest.raises(StorageError, match="403 InvalidAccessKeyId") as refused:
            bucket().listing("tasks/")
        assert_no_secret(refused.value, fake)


# ------------------------------------------------------------ failures


def test_a_5xx_is_retried_once_then_a_storage_error(cos: FakeCos) -> None:
    cos.fail_next("PutObject", 500, times=2)
    with pytest.raises(StorageError) as failed:
        bucket().put("tasks/t1/out.json", b"{}", "application/json")
    assert str(failed.value) == "COS PutObject failed: 500 InternalError"
    assert failed.value.__cause__ is None and failed.value.__suppress_context__
    assert_no_secret(failed.value, cos)
    assert cos.count("PutObject") == 2

    cos.fail_next("ListObjects", 503)
    assert bucket().listing("tasks/").objects == []  # the retry went through
    assert cos.count("ListObjects") == 2


@pytest.mark.parametrize(
    "call",
    [
        lambda s: s.put("tasks/t1/x", b"1", "text/plain"),
        lambda s: s.head("tasks/t1/x"),
        lambda s: s.public("tasks/t1/x"),
        lambda s: s.listing("tasks/"),
        lambda s: s.delete(["tasks/t1/x"]),
        lambda s: s.lifecycle(),
        lambda s: s.put_lifecycle([{"ID": "x", "Status": "Enabled"}]),
        lambda s: s.policy(),
        lambda s: s.put_policy({"version": "2.0", "Statement": []}),
    ],
    ids=[
        "put",
        "head",
        "public",
        "listing",
        "delete",
        "lifecycle",
        "put_lifecycle",
        "policy",
        "put_policy",
    ],
)
def test_every_operation_fails_as_a_storage_error_naming_it(
    cos: FakeCos, call: Callable[[adapter.CosStore], object]
) -> None:
    for op in ("PutObject", "HeadObject", "GetObjectACL", "ListObjects", "DeleteObjects"):
        cos.fail_after(op, 0, 503)
    cos.fail_after("GetBucketLifecycle", 0, 500)
    cos.fail_after("PutBucketLifecycle", 0, 500)
    cos.fail_after("GetBucketPolicy", 0, 500)
    cos.fail_after("PutBucketPolicy", 0, 500)
    with pytest.raises(StorageError, match=r"^COS \w+ failed: 50[03] \w+$") as failed:
        call(bucket())
    assert "tasks/t1/x" not in str(failed.value)
    assert_no_secret(failed.value, cos)


def test_connection_refused_is_a_storage_error(cos: FakeCos) -> None:
    with settings_env(COS_ENDPOINT=f"127.0.0.1:{closed_port()}"):
        started = time.monotonic()
        with pytest.raises(StorageError, match=r"^COS ListObjects failed: connection refused$"):
            bucket().listing("tasks/")
    assert time.monotonic() - started < 5


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        thread.join(2)
        for conn in held:
            conn.close()
        server.close()


def test_a_silent_store_times_out(
    cos: FakeCos, silent_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(adapter, "TIMEOUT_S", 0.5)
    with settings_env(COS_ENDPOINT=f"127.0.0.1:{silent_port}"):
        started = time.monotonic()
        with pytest.raises(StorageError, match=r"^COS HeadObject failed: timed out after 0.5 s$"):
            bucket().head("tasks/t1/x")
    # two attempts of 0.5 s and the SDK's 1 s pause between them
    assert time.monotonic() - started < 4


def test_a_head_with_its_own_timeout_is_one_attempt_of_that_long(
    cos: FakeCos, silent_port: int
) -> None:
    """A caller with a deadline gives the HEAD what is left of it: the adapter's 10 s and its
    retry would outlast it."""
    key = "uploads/u1/x"
    cos.plant(key, b"1")
    cos.fail_next("HeadObject", 503)
    with pytest.raises(StorageError, match=r"^COS HeadObject failed: 503 \w+$"):
        bucket().head(key, timeout_s=2)
    assert cos.count("HeadObject") == 1
    info = bucket().head(key, timeout_s=2)
    assert info is not None and info.size_bytes == 1
    with settings_env(COS_ENDPOINT=f"127.0.0.1:{silent_port}"):
        started = time.monotonic()
        with pytest.raises(StorageError, match=r"^COS HeadObject failed: timed out after 0.4 s$"):
            bucket().head(key, timeout_s=0.4)
    assert time.monotonic() - started < 3  # the adapter's own 10 s would outlast it


def test_unconfigured_credentials_are_a_storage_error(cos: FakeCos) -> None:
    unset = settings_env(TENCENTCLOUD_SECRET_ID=None, TENCENTCLOUD_SECRET_KEY=None)
    with unset, pytest.raises(StorageError, match="not configured"):
        bucket()
