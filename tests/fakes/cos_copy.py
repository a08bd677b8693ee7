"""PUT Object - Copy in tests/fakes/cos.py, as COS documents it
(cloud.tencent.com/document/product/436/10881):

- A PUT of an object carrying `x-cos-copy-source: <bucket>.cos.<region>.myqcloud.com/<key>`
  (the key URL-encoded) is a copy of that object to the request's key, not an upload of
  the request's body. The page shows `Content-Length: 0` and says nothing of a body: the
  fake ignores one, the worst case for a presigned PUT whose signature fixes the length.
- The destination bucket authorises it as `cos:PutObjectCopy`, not `cos:PutObject` ("目标
  存储桶的授权策略中 action 设置为 cos:PutObjectCopy"; the source's as `cos:GetObject`,
  which the fake grants to its own key as CAM grants ours). So the bucket policy's statements
  on PutObject do not apply to it, and one on PutObjectCopy does.
- The copy takes the ACL and storage class the request names, else a private STANDARD
  object; the answer is `<CopyObjectResult>` with the new object's ETag and LastModified.
- The fake serves one bucket: a source in another is 404 NoSuchBucket; a missing source
  key 404 NoSuchKey.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from urllib.parse import unquote

from tests.fakes.cos_wire import CosRefusal

COPY_SOURCE = "x-cos-copy-source"


@dataclass(frozen=True)
class CopySource:
    bucket: str
    key: str


def copy_source(headers: Mapping[str, str]) -> str | None:
    """The request's `x-cos-copy-source`, in any case of its name, or None."""
    return next((v for k, v in headers.items() if k.lower() == COPY_SOURCE), None)


def parse_source(value: str) -> CopySource:
    """`<bucket>.cos.<region>.myqcloud.com/<key>` (a scheme before it tolerated)."""
    host, slash, key = value.split("://", 1)[-1].partition("/")
    if not slash or not key or ".cos." not in host:
        raise CosRefusal(400, "InvalidArgument", "The x-cos-copy-source is not valid.")
    return CopySource(bucket=host.split(".cos.", 1)[0], key=unquote(key.split("?", 1)[0]))


def copy_answer(data: bytes) -> bytes:
    modified = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    etag = hashlib.md5(data).hexdigest()  # an ETag, as COS gives a simple upload
    return (
        f'<CopyObjectResult><ETag>"{etag}"</ETag>'
        f"<LastModified>{modified}</LastModified></CopyObjectResult>"
    ).encode()
