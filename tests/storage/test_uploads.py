"""Client uploads: `POST /uploads` gives a presigned PUT whose signature covers the declared
type and size (the store refuses any other), `POST /tasks` accepts only the owner's
uploaded keys, and the upstream receives a working presigned GET in the key's place."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import requests
from pydantic import ValidationError

from app.clock import utcnow
from app.config import Settings, get_settings
from app.ids import new_id
from app.storage import cleanup
from app.storage.objects import upload_key
from app.storage.store import store
from app.storage.uploads import CHECK_BUDGET_S, HEADS_AT_ONCE, NAMING_MARGIN_S, TASK_UPLOADS_MAX
from tests.fakes.cos import FakeCos
from tests.fakes.upstream import Answer, FakeUpstream
from tests.support.function_url import Reply, call
from tests.support.functions import handler
from tests.support.pipelines import Customer, Worker, new_pipeline
from tests.support.settings import settings_env

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 120


def upload(token: str, body: dict[str, Any]) -> Reply:
    return call(handler("uploads"), "POST", "/uploads", body=body, token=token)


def uploaded(customer: Customer, data: bytes = PNG, content_type: str = "image/png") -> str:
    reply = upload(customer.token, {"content_type": content_type, "size_bytes": len(data)})
    assert reply.status == 201, reply.body
    made = reply.json()
    put = requests.put(made["url"], data=data, headers=made["headers"], timeout=10)
    assert put.status_code == 200, put.text
    return str(made["key"])


def test_a_presigned_put_takes_exactly_the_declared_file(cos: FakeCos) -> None:
    customer = Customer(quota=0)
    reply = upload(customer.token, {"content_type": "image/png", "size_bytes": len(PNG)})
    assert reply.status == 201, reply.body
    made = reply.json()
    assert made["key"].startswith(f"uploads/{customer.id}/") and made["method"] == "PUT"
    assert made["headers"] == {
        "Content-Type": "image/png",
        "Content-Length": str(len(PNG)),
        "x-cos-acl": "private",
    }
    expires = datetime.fromisoformat(made["expires_at"].replace("Z", "+00:00"))
    left = expires - datetime.now(timezone.utc)
    assert timedelta(minutes=14) < left <= timedelta(minutes=15)
    other_type = {**made["headers"], "Content-Type": "image/jpeg"}
    refused = requests.put(made["url"], data=PNG, headers=other_type, timeout=10)
    assert refused.status_code == 403
    bigger = requests.put(
        made["url"], data=PNG + b"!", headers={"Content-Type": "image/png"}, timeout=10
    )
    assert bigger.status_code == 403
    assert store().head(made["key"]) is None
    put = requests.put(made["url"], data=PNG, headers=made["headers"], timeout=10)
    assert put.status_code == 200
    found = store().head(made["key"])
    assert found is not None and found.size_bytes == len(PNG)


def test_an_upload_cannot_be_made_public_by_its_client(cos: FakeCos) -> None:
    """The answer's URL with another ACL fails its signature; with a grant header added, once
    cos-cleanup has put the bucket policy in place, COS refuses it."""
    cleanup.run()
    customer = Customer(quota=0)
    made = upload(customer.token, {"content_type": "image/png", "size_bytes": len(PNG)}).json()
    public = made["headers"] | {"x-cos-acl": "public-read"}
    refused = requests.put(made["url"], data=PNG, headers=public, timeout=10)
    assert refused.status_code == 403 and "SignatureDoesNotMatch" in refused.text
    everyone = {"x-cos-grant-read": 'uri="http://cam.qcloud.com/groups/global/AllUsers"'}
    granted = requests.put(made["url"], data=PNG, headers=made["headers"] | everyone, timeout=10)
    assert granted.status_code == 403 and "AccessDenied" in granted.text
    assert cos.data(made["key"]) is None
    put = requests.put(made["url"], data=PNG, headers=made["headers"], timeout=10)
    assert put.status_code == 200
    anonymous = requests.get(f"http://{cos.endpoint}/{cos.bucket}/{made['key']}", timeout=10)
    assert anonymous.status_code == 403


@pytest.mark.parametrize(
    ("body", "code", "field"),
    [
        ({"content_type": "image/gif", "size_bytes": 10}, "UPLOAD_INVALID", "content_type"),
        ({"content_type": "image/png", "size_bytes": 0}, "UPLOAD_INVALID", "size_bytes"),
        ({"content_type": "image/png", "size_bytes": 10_485_761}, "UPLOAD_INVALID", "size_bytes"),
        ({"content_type": "image/png"}, "VALIDATION_ERROR", "size_bytes"),
        ({"content_type": "image/png", "size_bytes": "10"}, "VALIDATION_ERROR", "size_bytes"),
        ({"content_type": 5, "size_bytes": 10}, "VALIDATION_ERROR", "content_type"),
    ],
)
def test_bad_uploads_are_refused(cos: FakeCos, body: dict[str, Any], code: str, field: str) -> None:
    reply = upload(Customer(quota=0).token, body)
    assert reply.status == 422 and reply.json()["code"] == code, reply.body
    assert reply.json()["details"][0]["loc"] == ["body", field]


def test_a_user_is_given_at_most_uploads_per_user_per_hour_urls(cos: FakeCos) -> None:
    customer = Customer(quota=0)
    body = {"content_type": "image/png", "size_bytes": len(PNG)}
    with settings_env(UPLOADS_PER_USER_PER_HOUR="2"):
        # A request refused as invalid is given nothing and counts nothing.
        bad = upload(customer.token, {"content_type": "image/gif", "size_bytes": 10})
        assert bad.status == 422
        given = [upload(customer.token, body) for _ in range(2)]
        assert [reply.status for reply in given] == [201, 201]
        refused = upload(customer.token, body)
        assert refused.status == 429 and refused.json()["code"] == "RATE_LIMITED", refused.body
        assert 3500 <= int(refused.headers["Retry-After"]) <= 3600
        assert "url" not in refused.json() and "key" not in refused.json()
        # The limit is the user's own.
        assert upload(Customer(quota=0).token, body).status == 201
    # The two URLs given still work; the refusal presigned nothing that could.
    for reply in given:
        made = reply.json()
        put = requests.put(made["url"], data=PNG, headers=made["headers"], timeout=10)
        assert put.status_code == 200
    assert len(cos.keys(f"uploads/{customer.id}/")) == 2


def test_an_upload_the_store_could_not_sign_is_not_counted(cos: FakeCos) -> None:
    """The count is taken before the URL is signed, so that no number of parallel requests
    is given more; a request the store then fails was given no URL, and its count was
    kept: a store failing for a while spent the user's hour on nothing."""
    customer = Customer(quota=0)
    body = {"content_type": "image/png", "size_bytes": len(PNG)}
    with settings_env(UPLOADS_PER_USER_PER_HOUR="1", TENCENTCLOUD_SECRET_ID=""):
        failed = upload(customer.token, body)
    assert (failed.status, failed.json()["code"]) == (503, "SERVICE_UNAVAILABLE"), failed.body
    assert "url" not in failed.json()
    with settings_env(UPLOADS_PER_USER_PER_HOUR="1"):
        given = upload(customer.token, body)
        assert given.status == 201, given.body
        assert upload(customer.token, body).status == 429


def test_uploads_need_a_user() -> None:
    body = {"content_type": "image/png", "size_bytes": 1}
    assert call(handler("uploads"), "POST", "/uploads", body=body).status == 401


def test_a_task_names_only_its_owners_uploaded_keys(cos: FakeCos, worker: Worker) -> None:
    owner, other = Customer(quota=5), Customer(quota=5)
    key = uploaded(owner)
    with FakeUpstream() as upstream:
        upstream.script("/see", lambda _c: Answer(200, {"ok": True}))
        pipeline = new_pipeline([{"id": "see", "type": "http", "url": upstream.url("/see")}])
        refused = other.create(pipeline, {"image": key})
        assert refused.status == 422 and refused.json()["code"] == "UPLOAD_INVALID", refused.body
        assert other.quota() == (5, 0)
        never = owner.create(pipeline, {"image": upload_key(owner.id, new_id())})
        assert never.status == 422 and never.json()["code"] == "UPLOAD_INVALID"
        assert "was never uploaded" in never.json()["message"]
        created = owner.create(pipeline, {"pages": [{"image": key}], "note": "plain text"})
        assert created.status == 201, created.body
        task = owner.wait(created.json()["id"])
        assert task["status"] == "succeeded"
        assert task["input"] == {"pages": [{"image": key}], "note": "plain text"}
        [sent] = upstream.calls_to("/see")
    url = sent.body["input"]["pages"][0]["image"]
    assert url.startswith("http") and key in url
    fetched = requests.get(url, timeout=10)
    assert fetched.status_code == 200 and fetched.content == PNG


@pytest.mark.parametrize(
    "grant",
    [
        {"x-cos-grant-read": 'uri="http://cam.qcloud.com/groups/global/AllUsers"'},
        {"x-cos-grant-full-control": 'id="qcs::cam::anyone:anyone"'},
    ],
    ids=["read-all-users", "full-control-anyone"],
)
def test_a_task_does_not_name_an_upload_anyone_may_read(
    cos: FakeCos, worker: Worker, grant: dict[str, str]
) -> None:
    """Made public before cos-cleanup put the bucket policy in place: refused, so no task
    keeps it for RESULT_RETENTION_DAYS, and nothing charged."""
    owner = Customer(quota=5)
    made = upload(owner.token, {"content_type": "image/png", "size_bytes": len(PNG)}).json()
    put = requests.put(made["url"], data=PNG, headers=made["headers"] | grant, timeout=10)
    assert put.status_code == 200, put.text
    pipeline = new_pipeline([{"id": "see", "type": "http", "url": "http://127.0.0.1:9/see"}])
    refused = owner.create(pipeline, {"image": made["key"]})
    assert refused.status == 422 and refused.json()["code"] == "UPLOAD_INVALID", refused.body
    assert "is readable by anyone" in refused.json()["message"]
    assert owner.quota() == (5, 0)
    assert cos.count("GetObjectACL") == 1
    # the same bytes uploaded as given are named
    private = uploaded(owner)
    assert owner.create(pipeline, {"image": private}).status == 201


@pytest.mark.parametrize("storage_class", ["ARCHIVE", "DEEP_ARCHIVE", "GLACIER"])
def test_a_task_does_not_name_an_upload_that_needs_a_restore(
    cos: FakeCos, worker: Worker, storage_class: str
) -> None:
    """Archived by its uploader before cos-cleanup put the bucket policy in place: the
    upstream's GET would be refused, so it is refused here, and nothing charged."""
    owner = Customer(quota=5)
    made = upload(owner.token, {"content_type": "image/png", "size_bytes": len(PNG)}).json()
    chosen = made["headers"] | {"x-cos-storage-class": storage_class}
    put = requests.put(made["url"], data=PNG, headers=chosen, timeout=10)
    assert put.status_code == 200, put.text
    pipeline = new_pipeline([{"id": "see", "type": "http", "url": "http://127.0.0.1:9/see"}])
    refused = owner.create(pipeline, {"image": made["key"]})
    assert refused.status == 422 and refused.json()["code"] == "UPLOAD_INVALID", refused.body
    assert refused.json()["details"] == [
        {
            "loc": ["body", "input"],
            "msg": f"{made['key']} needs a restore before it can be read; "
            "upload it again as it was given",
        }
    ]
    assert owner.quota() == (5, 0)
    assert owner.list().json()["items"] == []


def test_a_task_names_an_upload_in_a_class_read_without_a_restore(
    cos: FakeCos, worker: Worker
) -> None:
    owner = Customer(quota=5)
    pipeline = new_pipeline([{"id": "wait", "type": "sim", "duration_ms": 10}])
    for storage_class in ("STANDARD_IA", "MAZ_STANDARD", "INTELLIGENT_TIERING"):
        made = upload(owner.token, {"content_type": "image/png", "size_bytes": len(PNG)}).json()
        chosen = made["headers"] | {"x-cos-storage-class": storage_class}
        assert requests.put(made["url"], data=PNG, headers=chosen, timeout=10).ok
        created = owner.create(pipeline, {"image": made["key"]})
        assert created.status == 201, (storage_class, created.body)


@pytest.mark.parametrize(
    "rest",
    [".", "..", "", "./x", "a" * 21, "a" * 23, "a" * 21 + "=", "a" * 21 + ".", "a" * 21 + "\n"],
)
def test_a_key_not_of_an_upload_ids_shape_is_refused_before_the_bucket(
    cos: FakeCos, rest: str
) -> None:
    """Under the owner's own prefix, only what `POST /uploads` gives is an upload: `.` or
    `..` would reach COS as another path than the one signed. Refused as not the user's,
    nothing asked of the bucket, nothing charged."""
    owner = Customer(quota=5)
    pipeline = new_pipeline([{"id": "wait", "type": "sim", "duration_ms": 10}])
    key = f"uploads/{owner.id}/{rest}"
    asked = sum(cos.counts().values())
    refused = owner.create(pipeline, {"image": key})
    assert refused.status == 422, refused.body
    assert refused.json()["code"] == "UPLOAD_INVALID"
    assert refused.json()["details"] == [
        {"loc": ["body", "input"], "msg": f"{key} is not an upload of yours"}
    ]
    assert sum(cos.counts().values()) == asked
    assert owner.quota() == (5, 0)
    assert owner.list().json()["items"] == []


def test_a_task_may_name_an_upload_only_until_shortly_before_cleanup_may_take_it(
    cos: FakeCos, worker: Worker
) -> None:
    """cos-cleanup takes uploads no task names once they pass COS_ORPHAN_GRACE_S; naming
    one closer to that than NAMING_MARGIN_S could lose it between the HEAD and the commit,
    so it is refused as too old, and nothing is charged."""
    owner = Customer(quota=5)
    usable_s = get_settings().cos_orphan_grace_s - NAMING_MARGIN_S
    young = upload_key(owner.id, new_id())
    cos.plant(young, PNG, last_modified=utcnow() - timedelta(seconds=usable_s - 120))
    old = upload_key(owner.id, new_id())
    cos.plant(old, PNG, last_modified=utcnow() - timedelta(seconds=usable_s + 120))
    pipeline = new_pipeline([{"id": "wait", "type": "sim", "duration_ms": 10}])
    refused = owner.create(pipeline, {"images": [young, old]})
    assert refused.status == 422, refused.body
    assert refused.json()["code"] == "UPLOAD_INVALID"
    assert old in refused.json()["message"] and "too old" in refused.json()["message"]
    assert owner.quota() == (5, 0)
    assert owner.list().json()["items"] == []
    created = owner.create(pipeline, {"image": young})
    assert created.status == 201, created.body
    assert owner.wait(created.json()["id"])["status"] == "succeeded"


def test_the_grace_leaves_time_to_upload_and_name_the_upload() -> None:
    with pytest.raises(ValidationError, match="cos_orphan_grace_s"):
        Settings.from_environ({"COS_ORPHAN_GRACE_S": "900"})


def test_an_input_names_at_most_task_uploads_max_uploads(cos: FakeCos, worker: Worker) -> None:
    """Each upload an input names is a HEAD before the task exists: past the cap the input is
    refused before the bucket is asked anything, and nothing is charged. A key named twice
    counts once, and the cap itself is accepted."""
    owner = Customer(quota=5)
    pipeline = new_pipeline([{"id": "wait", "type": "sim", "duration_ms": 10}])
    keys = [upload_key(owner.id, new_id()) for _ in range(TASK_UPLOADS_MAX)]
    for key in keys:
        cos.plant(key, PNG)
    heads = cos.count("HeadObject")
    one_more = owner.create(pipeline, {"pages": [*keys, upload_key(owner.id, new_id())]})
    assert one_more.status == 422, one_more.body
    assert one_more.json()["code"] == "VALIDATION_ERROR"
    assert one_more.json()["details"] == [
        {
            "loc": ["body", "input"],
            "msg": f"names {TASK_UPLOADS_MAX + 1} uploads, more than {TASK_UPLOADS_MAX}",
        }
    ]
    assert cos.count("HeadObject") == heads
    assert owner.quota() == (5, 0)
    assert owner.list().json()["items"] == []
    created = owner.create(pipeline, {"pages": keys, "cover": keys[0]})
    assert created.status == 201, created.body
    assert cos.count("HeadObject") == heads + TASK_UPLOADS_MAX
    assert owner.wait(created.json()["id"])["status"] == "succeeded"


def test_a_task_refused_before_its_uploads_are_checked_asks_the_bucket_nothing(
    cos: FakeCos,
) -> None:
    """The uploads an input names are a HEAD and an ACL read each, so every cheaper refusal
    comes first: no such pipeline, an input that does not fit it (naming too many uploads,
    or a key not the user's, among them), and the user's hourly count of tasks. None of them
    asks the bucket anything or charges anything, and a refused input takes no count."""
    owner = Customer(quota=5)
    fork = {"id": "f", "type": "fork", "for_each": "input.pages", "step": {"type": "sim"}}
    pipeline = new_pipeline([fork])
    keys = [upload_key(owner.id, new_id()) for _ in range(TASK_UPLOADS_MAX)]
    for key in keys:
        cos.plant(key, PNG)
    asked = sum(cos.counts().values())
    with settings_env(TASKS_PER_USER_PER_HOUR="1"):
        missing = owner.create("no-such-pipeline", {"pages": keys})
        assert (missing.status, missing.json()["code"]) == (404, "PIPELINE_NOT_FOUND")
        unfit = owner.create(pipeline, {"pages": {"first": keys[0]}})
        assert (unfit.status, unfit.json()["code"]) == (422, "VALIDATION_ERROR"), unfit.body
        too_many = owner.create(pipeline, {"pages": [*keys, upload_key(owner.id, new_id())]})
        assert (too_many.status, too_many.json()["code"]) == (422, "VALIDATION_ERROR")
        others = owner.create(pipeline, {"pages": [upload_key(new_id(), new_id())]})
        assert (others.status, others.json()["code"]) == (422, "UPLOAD_INVALID"), others.body
        assert sum(cos.counts().values()) == asked
        created = owner.create(pipeline, {"pages": keys})
        assert created.status == 201, created.body
        assert cos.count("HeadObject") >= TASK_UPLOADS_MAX
        asked = sum(cos.counts().values())
        limited = owner.create(pipeline, {"pages": keys})
        assert (limited.status, limited.json()["code"]) == (429, "RATE_LIMITED"), limited.body
    assert sum(cos.counts().values()) == asked
    assert owner.quota() == (4, 1)


def test_a_head_slower_than_the_check_budget_is_503_within_it(cos: FakeCos) -> None:
    """A HEAD that COS answers late would hold `POST /tasks` past its function's timeout
    (SCF's error, not ours): the check gives up when its budget ends, answers 503, and
    nothing is charged. The next request, with COS quick again, goes through."""
    owner = Customer(quota=5)
    pipeline = new_pipeline([{"id": "wait", "type": "sim", "duration_ms": 10}])
    key = upload_key(owner.id, new_id())
    cos.plant(key, PNG)
    cos.slow_next("HeadObject", CHECK_BUDGET_S + 3)
    started = time.monotonic()
    slow = owner.create(pipeline, {"image": key})
    took = time.monotonic() - started
    assert slow.status == 503 and slow.json()["code"] == "SERVICE_UNAVAILABLE", slow.body
    assert CHECK_BUDGET_S - 0.5 < took < CHECK_BUDGET_S + 2  # the HEAD alone takes 3 s more
    assert owner.quota() == (5, 0)
    assert owner.list().json()["items"] == []
    created = owner.create(pipeline, {"image": key})
    assert created.status == 201, created.body


def test_the_heads_of_one_input_are_sent_together(cos: FakeCos) -> None:
    """Twelve HEADs of a second each would take twelve one after another, past the budget;
    sent HEADS_AT_ONCE at a time they take two."""
    owner = Customer(quota=5)
    pipeline = new_pipeline([{"id": "wait", "type": "sim", "duration_ms": 10}])
    keys = [upload_key(owner.id, new_id()) for _ in range(12)]
    for key in keys:
        cos.plant(key, PNG)
        cos.slow_next("HeadObject", 1.0)
    assert len(keys) > CHECK_BUDGET_S and len(keys) <= 2 * HEADS_AT_ONCE
    started = time.monotonic()
    created = owner.create(pipeline, {"pages": keys})
    took = time.monotonic() - started
    assert created.status == 201, created.body
    assert 2 <= took < 3.5
    assert cos.count("HeadObject") == len(keys)
