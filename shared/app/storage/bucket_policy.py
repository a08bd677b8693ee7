"""The bucket policy's statements of ours: no upload can be made readable by anyone else,
nor put in a storage class of its holder's choosing, nor filled with a copy of another object.

A presigned PUT (app.storage.uploads) signs its Content-Type, Content-Length and
`x-cos-acl: private`, but COS checks only the headers its signature lists: its holder could
add `x-cos-grant-read: uri="http://cam.qcloud.com/groups/global/AllUsers"` (or another
`x-cos-grant-*`) and make the object public, our bucket a free download host on our bill.
Nor does a signature cover a request parameter it does not list, so the same URL with `?acl`
appended could be sent as a PutObjectACL. So the bucket policy denies, to everyone
(`qcs::cam::anyone:anyone`), under `uploads/` only:

- a PutObject whose `x-cos-acl` is absent or not `private` (`string_not_equal_if_exist`:
  true when the header is absent; ours always carry it, signed),
- a PutObject carrying any `x-cos-grant-*` header, one statement per header: the keys of one
  condition are all required together, so a single statement naming the four would deny
  only a request carrying all four,
- a PutObject carrying `x-cos-storage-class` at all: our URL never sends it, so any value
  is the holder's own. ARCHIVE or DEEP_ARCHIVE would make the upload unreadable without a
  restore (the task naming it would fail at the upstream, whose presigned GET COS refuses)
  and bill 60 or 180 days of storage for an object cleanup deletes after hours. PutObject is
  the only write the URL can be turned into: PostObject, InitiateMultipartUpload and
  AppendObject are POSTs, and the signature covers the method,
- every PutObjectACL: the backend never changes an upload's ACL,
- every PutObjectCopy: `x-cos-copy-source`, a header the URL does not sign, makes the PUT a
  PUT Object - Copy (.../436/10881), which COS authorises at the destination as
  `cos:PutObjectCopy`, not `cos:PutObject`, so none of the statements above applies to it;
  the source is read with the key that signed the URL, the platform's, so the holder could
  fill their own upload with another user's upload or a task's output (or anything else
  that key reads) and have a task send it upstream. The backend never copies into
  `uploads/`. The action is denied whatever the request carries: no condition key for the
  header is documented, and the action's name is.

Condition keys and operators as COS documents them for bucket policies
(cloud.tencent.com/document/product/436/71306, .../436/46206: `cos:x-cos-acl` with
`string_equal` / `string_not_equal_if_exist`; `cos:x-cos-storage-class`, documented for
PutObject, PostObject, InitiateMultipartUpload and AppendObject). The `cos:x-cos-grant-*`
keys follow the same rule (a request header's name after `cos:`), which those pages show
for `x-cos-acl` and `x-cos-storage-class`; should COS not know them, an upload made public
that way is still refused by `POST /tasks` (app.storage.uploads) and deleted by cleanup
after the grace, as is one archived before the policy was in place.
A deny overrides any allow, whoever signed.

cos-cleanup keeps them as it keeps the lifecycle rules: merged into the policy the bucket
already has, whose other statements stay; one of ours changed by hand is put back; a PUT
only when the merged document differs from what was read. Each of ours has a `Sid`
(`ai-platform-uploads-...`; GET Bucket policy, .../436/8276, gives a statement's `Sid`
back), and a statement is ours by that id or by what it denies (effect, actions, resources
and condition keys): a COS that dropped the id would still not have ours added twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from app.storage.objects import UPLOAD_ACL, UPLOADS, ObjectStore, StorageError

ANYONE = "qcs::cam::anyone:anyone"
GRANT_HEADERS = (
    "x-cos-grant-read",
    "x-cos-grant-read-acp",
    "x-cos-grant-write-acp",
    "x-cos-grant-full-control",
)
SID_PREFIX = "ai-platform-uploads-"


def uploads_resource(region: str, bucket: str) -> str:
    """`qcs::cos:{region}:uid/{appid}:{bucket}/uploads/*`: the APPID is the bucket name's
    last part (`name-1250000000`)."""
    appid = bucket.rpartition("-")[2]
    if not appid.isdigit():
        raise StorageError(f"COS_BUCKET {bucket!r} does not end in its APPID")
    return f"qcs::cos:{region}:uid/{appid}:{bucket}/{UPLOADS}*"


def our_statements(region: str, bucket: str) -> list[dict[str, Any]]:
    resource = uploads_resource(region, bucket)

    def deny(sid: str, action: str, condition: dict[str, Any] | None = None) -> dict[str, Any]:
        statement: dict[str, Any] = {
            "Sid": SID_PREFIX + sid,
            "Effect": "deny",
            "Principal": {"qcs": [ANYONE]},
            "Action": [f"name/cos:{action}"],
            "Resource": [resource],
        }
        if condition is not None:
            statement["Condition"] = condition
        return statement

    acl = deny(
        "acl-private", "PutObject", {"string_not_equal_if_exist": {"cos:x-cos-acl": UPLOAD_ACL}}
    )
    grants = [
        deny(f"no-{header[len('x-cos-') :]}", "PutObject", {"string_like": {f"cos:{header}": "*"}})
        for header in GRANT_HEADERS
    ]
    # Any value, STANDARD too: nothing of ours sends the header (string_like without
    # `_if_exist`: false when it is absent).
    storage_class = deny(
        "no-storage-class", "PutObject", {"string_like": {"cos:x-cos-storage-class": "*"}}
    )
    acl_change = deny("no-acl-change", "PutObjectACL")
    return [acl, *grants, storage_class, acl_change, deny("no-copy", "PutObjectCopy")]


def ensure_policy(bucket: ObjectStore, region: str, bucket_name: str) -> bool:
    """Our statements in the bucket's policy, the others kept as read; True when it had to
    be written (a PUT replaces the whole policy, so only then)."""
    current = bucket.policy() or {"version": "2.0", "Statement": []}
    list_key = next((k for k in current if k.lower() == "statement"), "Statement")
    statements = current.get(list_key) or []
    if isinstance(statements, dict):
        statements = [statements]
    if not isinstance(statements, list) or not all(isinstance(s, dict) for s in statements):
        raise StorageError("COS GetBucketPolicy gave an unusable answer")
    # COS takes a policy's element names all capitalised or all lower-case (.../436/46206):
    # ours follow the document they join.
    ours = [_cased(s, lower=list_key.islower()) for s in our_statements(region, bucket_name)]
    our_sids = {_sid(s) for s in ours}
    our_denials = {_identity(s) for s in ours}
    merged = [
        s for s in statements if _sid(s) not in our_sids and _identity(s) not in our_denials
    ] + ours
    if _same(merged, statements):
        return False
    bucket.put_policy({**current, list_key: merged})
    return True


def _cased(statement: dict[str, Any], *, lower: bool) -> dict[str, Any]:
    return {(k.lower() if lower else k): v for k, v in statement.items()}


def _sid(statement: dict[str, Any]) -> str:
    return next((str(v) for k, v in statement.items() if str(k).lower() == "sid"), "")


def _identity(statement: dict[str, Any]) -> tuple[str, ...]:
    """What a statement denies or allows, however COS spells it back: element names in
    either case, a single value or a list."""
    plain = {str(k).lower(): v for k, v in statement.items()}
    condition = plain.get("condition") or {}
    keys = sorted(
        str(key).lower()
        for block in (condition.values() if isinstance(condition, dict) else [])
        if isinstance(block, dict)
        for key in block
    )
    return (
        str(plain.get("effect", "")).lower(),
        "|".join(sorted(_values(plain.get("action")))),
        "|".join(sorted(_values(plain.get("resource")))),
        "|".join(keys),
    )


def _same(merged: Sequence[dict[str, Any]], current: Sequence[dict[str, Any]]) -> bool:
    """The merged statements are the ones read, as COS gives them back."""
    return sorted(map(_canonical, merged), key=repr) == sorted(map(_canonical, current), key=repr)


def _canonical(value: Any) -> Any:
    """A single value and a one-item list mean the same; so does an effect in either case."""
    if isinstance(value, dict):
        return {str(k).lower(): _canonical(v) for k, v in value.items()}
    items = value if isinstance(value, (list, tuple)) else [value]
    return sorted((_item(item) for item in items), key=repr)


def _item(value: Any) -> Any:
    if isinstance(value, (dict, list, tuple)):
        return _canonical(value)
    text = str(value)
    return text.lower() if text.lower() in ("allow", "deny") else text


def _values(value: Any) -> list[str]:
    if value is None:
        return []
    return [str(item) for item in value] if isinstance(value, list) else [str(value)]
