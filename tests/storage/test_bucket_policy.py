"""The bucket policy cos-cleanup keeps: no one holding a presigned PUT can make an upload
readable by all users, with a grant header the signature does not list or with the URL sent
as a PutObjectACL, nor choose its storage class; our statements merged into the policy the
bucket has, whose other statements stay, and written only when something changed."""

from __future__ import annotations

from typing import Any

import pytest
import requests

from app.config import get_settings
from app.storage import bucket_policy, cleanup
from app.storage.objects import StorageError
from app.storage.store import store
from tests.fakes.cos import FakeCos
from tests.fakes.cos_wire import REGION

EVERYONE = 'uri="http://cam.qcloud.com/groups/global/AllUsers"'
KEY = "uploads/u1/abc"
DATA = b"12345"


def ours() -> list[dict[str, Any]]:
    settings = get_settings()
    return bucket_policy.our_statements(settings.cos_region, settings.cos_bucket)


def anonymous_get(cos: FakeCos, key: str) -> int:
    return requests.get(f"http://{cos.endpoint}/{cos.bucket}/{key}", timeout=10).status_code


@pytest.mark.parametrize("grant", bucket_policy.GRANT_HEADERS)
def test_an_upload_with_a_grant_header_is_refused(cos: FakeCos, grant: str) -> None:
    cleanup.run()
    upload = store().presign_put(KEY, "image/png", len(DATA), 900)
    extra = {grant: EVERYONE}
    reply = requests.put(upload.url, data=DATA, headers=upload.headers | extra, timeout=10)
    assert reply.status_code == 403, reply.text
    assert "<Code>AccessDenied</Code>" in reply.text
    assert cos.data(KEY) is None
    assert anonymous_get(cos, KEY) == 403
    # the same URL with exactly its own headers uploads, privately
    reply = requests.put(upload.url, data=DATA, headers=upload.headers, timeout=10)
    assert reply.status_code == 200, reply.text
    assert cos.acl(KEY) == {"x-cos-acl": "private"}
    assert anonymous_get(cos, KEY) == 403


@pytest.mark.parametrize("storage_class", ["ARCHIVE", "DEEP_ARCHIVE", "STANDARD"])
def test_an_upload_with_a_storage_class_is_refused(cos: FakeCos, storage_class: str) -> None:
    """Our URL never sends `x-cos-storage-class`: any value is its holder's, refused."""
    cleanup.run()
    upload = store().presign_put(KEY, "image/png", len(DATA), 900)
    chosen = upload.headers | {"x-cos-storage-class": storage_class}
    reply = requests.put(upload.url, data=DATA, headers=chosen, timeout=10)
    assert reply.status_code == 403, reply.text
    assert "<Code>AccessDenied</Code>" in reply.text
    assert cos.data(KEY) is None
    reply = requests.put(upload.url, data=DATA, headers=upload.headers, timeout=10)
    assert reply.status_code == 200, reply.text
    assert cos.storage_class(KEY) == "STANDARD"


def test_a_presigned_put_sent_as_an_acl_change_is_refused(cos: FakeCos) -> None:
    """A signature does not cover a parameter it does not list: `&acl` makes the URL a
    PutObjectACL, which the policy refuses under uploads/ whatever it carries."""
    cleanup.run()
    upload = store().presign_put(KEY, "image/png", len(DATA), 900)
    assert requests.put(upload.url, data=DATA, headers=upload.headers, timeout=10).ok
    everyone = upload.headers | {"x-cos-grant-read": EVERYONE}
    reply = requests.put(upload.url + "&acl", data=DATA, headers=everyone, timeout=10)
    assert reply.status_code == 403, reply.text
    assert cos.count("PutObjectACL") == 1
    assert cos.acl(KEY) == {"x-cos-acl": "private"}
    assert anonymous_get(cos, KEY) == 403


@pytest.mark.parametrize("source", ["uploads/u2/theirs", "tasks/t2/out.json"])
def test_a_presigned_put_sent_as_a_copy_is_refused(cos: FakeCos, source: str) -> None:
    """`x-cos-copy-source`, which the signature does not list, makes the URL a PUT Object -
    Copy, authorised as PutObjectCopy: another user's upload or output, read with the
    platform's key, would land at the holder's key. The policy refuses every copy there."""
    cleanup.run()
    cos.plant(source, b"not yours")
    upload = store().presign_put(KEY, "image/png", len(DATA), 900)
    copying = upload.headers | {
        "x-cos-copy-source": f"{cos.bucket}.cos.{REGION}.myqcloud.com/{source}"
    }
    reply = requests.put(upload.url, data=DATA, headers=copying, timeout=10)
    assert reply.status_code == 403, reply.text
    assert "<Code>AccessDenied</Code>" in reply.text
    assert cos.count("PutObjectCopy") == 1
    assert cos.data(KEY) is None
    # the same URL with exactly its own headers uploads its own bytes
    reply = requests.put(upload.url, data=DATA, headers=upload.headers, timeout=10)
    assert reply.status_code == 200, reply.text
    assert cos.data(KEY) == DATA


def test_the_fake_copies_what_no_statement_refuses(cos: FakeCos) -> None:
    """FakeCos makes the copy, as COS does, when the policy does not refuse it: the test
    above is refused by the policy, not by a fake that cannot copy."""
    cos.plant("tasks/t2/out.json", b"not yours")
    upload = store().presign_put(KEY, "image/png", len(DATA), 900)
    source = f"{cos.bucket}.cos.{REGION}.myqcloud.com/tasks/t2/out.json"
    reply = requests.put(
        upload.url, data=DATA, headers=upload.headers | {"x-cos-copy-source": source}, timeout=10
    )
    assert reply.status_code == 200, reply.text
    assert "<CopyObjectResult>" in reply.text
    assert cos.data(KEY) == b"not yours"


def test_outputs_are_written_as_before(cos: FakeCos) -> None:
    """The statements name uploads/ only: the backend's own writes under tasks/ pass."""
    cleanup.run()
    store().put("tasks/t1/out.json", b"{}", "application/json")
    assert cos.data("tasks/t1/out.json") == b"{}"


def test_ours_merged_into_the_bucket_policy_and_not_rewritten_unchanged(cos: FakeCos) -> None:
    foreign = {
        "Effect": "allow",
        "Principal": {"qcs": ["qcs::cam::uin/100000000001:uin/100000000002"]},
        "Action": ["name/cos:GetObject"],
        "Resource": [f"qcs::cos:ap-guangzhou:uid/1250000000:{cos.bucket}/logs/*"],
    }
    acl_statement = ours()[0]
    changed_by_hand = {
        **acl_statement,
        "Condition": {"string_not_equal_if_exist": {"cos:x-cos-acl": "public-read"}},
    }
    store().put_policy({"version": "2.0", "Statement": [foreign, changed_by_hand]})
    puts = cos.count("PutBucketPolicy")

    cleanup.run()

    policy = cos.policy()
    assert policy == {"version": "2.0", "Statement": [foreign, *ours()]}
    assert cos.count("PutBucketPolicy") == puts + 1
    cleanup.run()
    cleanup.run()
    assert cos.count("PutBucketPolicy") == puts + 1
    assert cos.count("GetBucketPolicy") == 3


def test_a_bucket_without_a_policy_gets_ours_once(cos: FakeCos) -> None:
    cleanup.run()
    assert cos.policy() == {"version": "2.0", "Statement": ours()}
    cleanup.run()
    assert cos.count("PutBucketPolicy") == 1


def test_a_policy_written_in_lower_case_gets_ours_in_lower_case(cos: FakeCos) -> None:
    foreign = {
        "effect": "deny",
        "principal": {"qcs": ["qcs::cam::anyone:anyone"]},
        "action": "name/cos:DeleteObject",
        "resource": f"qcs::cos:ap-guangzhou:uid/1250000000:{cos.bucket}/keep/*",
    }
    store().put_policy({"version": "2.0", "statement": foreign})
    cleanup.run()
    lower = [{k.lower(): v for k, v in statement.items()} for statement in ours()]
    assert cos.policy() == {"version": "2.0", "statement": [foreign, *lower]}
    cleanup.run()
    assert cos.count("PutBucketPolicy") == 2


def test_statements_read_back_in_another_spelling_are_not_rewritten(cos: FakeCos) -> None:
    """COS may give a one-item list back as its item, and an effect in another case."""
    respelled = [
        {
            **statement,
            "Effect": "Deny",
            "Action": statement["Action"][0],
            "Resource": statement["Resource"][0],
        }
        for statement in ours()
    ]
    store().put_policy({"version": "2.0", "Statement": respelled})
    cleanup.run()
    assert cos.count("PutBucketPolicy") == 1


def test_ours_read_back_without_their_ids_are_not_added_twice(cos: FakeCos) -> None:
    """A statement is ours by its Sid or by what it denies: a COS that dropped the ids would
    have them written again, never a second copy kept."""
    without_ids = [{k: v for k, v in s.items() if k != "Sid"} for s in ours()]
    store().put_policy({"version": "2.0", "Statement": without_ids})
    cleanup.run()
    assert cos.policy() == {"version": "2.0", "Statement": ours()}


def test_one_of_ours_changed_beyond_recognition_is_known_by_its_id(cos: FakeCos) -> None:
    grant_read = ours()[1]
    changed = {**grant_read, "Condition": {"string_like": {"cos:x-cos-meta-x": "*"}}}
    store().put_policy({"version": "2.0", "Statement": [changed]})
    cleanup.run()
    assert cos.policy() == {"version": "2.0", "Statement": ours()}


def test_the_resource_names_the_buckets_appid() -> None:
    assert (
        bucket_policy.uploads_resource("ap-guangzhou", "media-1250000000")
        == "qcs::cos:ap-guangzhou:uid/1250000000:media-1250000000/uploads/*"
    )
    with pytest.raises(StorageError):
        bucket_policy.uploads_resource("ap-guangzhou", "no-appid")
