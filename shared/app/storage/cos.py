"""The bucket on Tencent Cloud COS through cos-python-sdk-v5: the `ObjectStore` adapter.

Owns the SDK: nothing else in the app imports it, and this module is imported only when a
function first asks for the bucket (`app.storage.store.store()`). Every call has a 10 s
timeout and one retry of what the SDK retries (network errors and 5xx), except a HEAD given
a timeout of its own (by a caller with a deadline), which is one attempt with that timeout;
whatever fails becomes a `StorageError` naming the operation and COS's status and code,
never a key, a credential or a signature.

Production reaches `<bucket>.cos.<region>.myqcloud.com` over https. With COS_ENDPOINT
(`host:port`, tests and the local cloud) the SDK sends its requests over http to that
address with the bucket in the `Host` header, as COS expects; presigned URLs, which their
holder sends without our headers, name the bucket in the path instead
(`http://host:port/<bucket>/<key>?<signature>`), which the stand-ins read path-style. The
signature is the SDK's own either way (it covers the key's path, not the bucket's place).
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

from qcloud_cos import CosConfig, CosS3Client
from qcloud_cos.cos_exception import CosClientError, CosServiceError

from app.clock import rfc3339, utcnow
from app.config import Settings
from app.storage.objects import (
    DELETE_BATCH,
    STANDARD,
    UPLOAD_ACL,
    Deleted,
    KeyFailure,
    Listing,
    ObjectInfo,
    Presigned,
    StorageError,
)

TIMEOUT_S = 10
# One more attempt for what the SDK retries (connection errors, timeouts, 5xx), after 1 s:
# the SDK's default of 3 with growing sleeps would hold a call for over a minute.
RETRIES = 1
# The SDK logs each request's URL at INFO, the Authorization and its signing key at DEBUG,
# and COS's error bodies at ERROR: what failed reaches the logs through StorageError alone.
logging.getLogger("qcloud_cos").setLevel(logging.CRITICAL)

T = TypeVar("T")
_NO_LIFECYCLE = ("NoSuchLifecycleConfiguration", "Unknown")
# Whom a grant in an object's ACL names for all users, and what lets them read: COS's
# AllUsers group, as the SDK's own parse_object_canned_acl reads a public-read object
# (`{"Grantee": {"Type": "Group", "URI": ...}, "Permission": "READ"}`), or everyone's id.
_ALL_USERS = ("http://cam.qcloud.com/groups/global/AllUsers", "qcs::cam::anyone:anyone")
_READS = ("READ", "FULL_CONTROL")
_PUBLIC_CANNED = ("public-read", "public-read-write")


def from_settings(settings: Settings) -> CosStore:
    """The bucket COS_BUCKET in COS_REGION, with the Tencent Cloud credentials (the run
    role's temporary keys and token on SCF)."""
    secret_id = settings.tencentcloud_secret_id
    secret_key = settings.tencentcloud_secret_key.get_secret_value()
    if not secret_id or not secret_key:
        raise StorageError("COS is not configured: TENCENTCLOUD_SECRET_ID/KEY are unset")
    # An empty token must be None: the SDK sends any other value as x-cos-security-token.
    token = settings.tencentcloud_session_token.get_secret_value() or None
    where: dict[str, Any] = {"Scheme": "https"}
    path_style: str | None = None
    if settings.cos_endpoint:
        host, _, port = settings.cos_endpoint.rpartition(":")
        where = {"Scheme": "http", "IP": host, "Port": int(port)}
        path_style = settings.cos_bucket
    config = functools.partial(
        CosConfig,
        Region=settings.cos_region,
        SecretId=secret_id,
        SecretKey=secret_key,
        Token=token,
        **where,
    )
    try:
        client = CosS3Client(config(Timeout=TIMEOUT_S), retry=RETRIES)
    except CosClientError:
        raise StorageError("COS is not configured: unusable credentials or region") from None
    return CosStore(client, config, settings.cos_bucket, token, path_style)


class CosStore:
    """One bucket. `config`: CosConfig with all but its Timeout, for a call with a timeout of
    its own. `path_style`: the bucket named in presigned URLs' paths (COS_ENDPOINT)."""

    def __init__(
        self,
        client: CosS3Client,
        config: Callable[..., CosConfig],
        bucket: str,
        token: str | None,
        path_style: str | None,
    ) -> None:
        self._client = client
        self._config = config
        self._bucket = bucket
        self._token = token
        self._path_style = path_style

    def __repr__(self) -> str:
        return f"CosStore(bucket={self._bucket!r})"

    # ------------------------------------------------------------ objects

    def put(self, key: str, data: bytes, content_type: str) -> None:
        self._call(
            "PutObject",
            lambda: self._client.put_object(
                Bucket=self._bucket, Key=key, Body=data, ContentType=content_type, EnableMD5=True
            ),
        )

    def head(self, key: str, timeout_s: float | None = None) -> ObjectInfo | None:
        def call() -> Any:
            return self._client_within(timeout_s).head_object(Bucket=self._bucket, Key=key)

        try:
            headers = self._call("HeadObject", call, timeout_s)
        except _NotFound:
            return None
        # The SDK gives the headers as a plain dict, in whatever case the server wrote them.
        lower = {str(name).lower(): value for name, value in headers.items()}
        try:
            size = int(lower["content-length"])
            modified = parsedate_to_datetime(lower["last-modified"]).astimezone(timezone.utc)
        except (KeyError, TypeError, ValueError):
            raise StorageError("COS HeadObject gave an unusable answer") from None
        storage_class = str(lower.get("x-cos-storage-class") or STANDARD)
        return ObjectInfo(
            key=key, size_bytes=size, last_modified=modified, storage_class=storage_class
        )

    def public(self, key: str, timeout_s: float | None = None) -> bool | None:
        def call() -> Any:
            return self._client_within(timeout_s).get_object_acl(Bucket=self._bucket, Key=key)

        try:
            answer = _plain(self._call("GetObjectACL", call, timeout_s))
        except _NotFound:
            return None
        try:
            grants = _items((answer.get("AccessControlList") or {}).get("Grant"))
            return answer.get("CannedACL") in _PUBLIC_CANNED or any(
                _to_all_users(grant) for grant in grants
            )
        except (AttributeError, TypeError):
            raise StorageError("COS GetObjectACL gave an unusable answer") from None

    def presign_get(self, key: str, expires_s: int) -> Presigned:
        return self._presign("GET", key, {}, expires_s)

    def presign_put(
        self, key: str, content_type: str, size_bytes: int, expires_s: int
    ) -> Presigned:
        # All three go into q-header-list: COS refuses the upload with another type, length
        # or ACL (`public-read`, ...), and one without them. A header the holder adds that
        # is not signed (`x-cos-grant-*`, `x-cos-copy-source`) the bucket policy refuses
        # (app.storage.bucket_policy).
        headers = {
            "Content-Type": content_type,
            "Content-Length": str(size_bytes),
            "x-cos-acl": UPLOAD_ACL,
        }
        return self._presign("PUT", key, headers, expires_s)

    def _presign(self, method: str, key: str, headers: dict[str, str], expires_s: int) -> Presigned:
        # Temporary keys sign only together with their token, which COS reads from the query.
        params = {"x-cos-security-token": self._token} if self._token else {}
        # The SDK signs to the whole second it reads as it signs (`int(time.time())` plus
        # the TTL), never before this one: the time told is never after the signature's end.
        expires_at = utcnow().replace(microsecond=0) + timedelta(seconds=expires_s)
        url = self._call(
            "presign",
            lambda: self._client.get_presigned_url(
                Bucket=self._bucket,
                Key=key,
                Method=method,
                Expired=expires_s,
                Params=dict(params),
                Headers=dict(headers),
            ),
        )
        if self._path_style is not None:
            parts = urlsplit(url)
            url = urlunsplit(parts._replace(path=f"/{self._path_style}{parts.path}"))
        return Presigned(url=url, method=method, headers=headers, expires_at=expires_at)

    # ------------------------------------------------------------ listing and deleting

    def listing(self, prefix: str, marker: str | None = None, max_keys: int = 1000) -> Listing:
        answer = _plain(
            self._call(
                "ListObjects",
                lambda: self._client.list_objects(
                    Bucket=self._bucket, Prefix=prefix, Marker=marker or "", MaxKeys=max_keys
                ),
            )
        )
        try:
            objects = [
                ObjectInfo(
                    key=str(item["Key"]),
                    size_bytes=int(item["Size"]),
                    last_modified=_iso_utc(str(item["LastModified"])),
                    storage_class=str(item.get("StorageClass") or STANDARD),
                )
                for item in _items(answer.get("Contents"))
            ]
        except (KeyError, TypeError, ValueError):
            raise StorageError("COS ListObjects gave an unusable answer") from None
        truncated = str(answer.get("IsTruncated", "false")).lower() == "true"
        if not truncated:
            return Listing(objects=objects, next_marker=None)
        # COS gives NextMarker with a truncated page; S3's rule (the last key) covers its absence.
        next_marker = answer.get("NextMarker") or (objects[-1].key if objects else None)
        if not next_marker:
            raise StorageError("COS ListObjects gave an unusable answer: truncated, no marker")
        return Listing(objects=objects, next_marker=str(next_marker))

    def delete(self, keys: list[str]) -> Deleted:
        if not keys:
            return Deleted(deleted=[], failed=[])
        if len(keys) > DELETE_BATCH:
            raise ValueError(f"DeleteObjects takes at most {DELETE_BATCH} keys, got {len(keys)}")
        # Quiet false: COS answers for every key, so a key it did not delete is known.
        request = {"Quiet": "false", "Object": [{"Key": key} for key in keys]}
        answer = _plain(
            self._call(
                "DeleteObjects",
                lambda: self._client.delete_objects(Bucket=self._bucket, Delete=request),
            )
        )
        asked = set(keys)
        try:
            deleted = [str(item["Key"]) for item in _items(answer.get("Deleted"))]
            failed = [
                KeyFailure(key=str(item["Key"]), code=str(item.get("Code") or "Unknown"))
                for item in _items(answer.get("Error"))
            ]
        except (KeyError, TypeError, AttributeError):
            raise StorageError("COS DeleteObjects gave an unusable answer") from None
        deleted = [key for key in dict.fromkeys(deleted) if key in asked]
        answered = set(deleted) | {failure.key for failure in failed}
        # A key COS said nothing about is not known to be gone: the next run sees it again.
        failed += [KeyFailure(key=key, code="NoAnswer") for key in keys if key not in answered]
        return Deleted(deleted=deleted, failed=failed)

    # ------------------------------------------------------------ lifecycle

    def lifecycle(self) -> list[dict[str, Any]]:
        try:
            answer = self._call(
                "GetBucketLifecycle",
                lambda: self._client.get_bucket_lifecycle(Bucket=self._bucket),
            )
        except _NotFound:
            return []  # NoSuchLifecycleConfiguration: the bucket has no rules
        answer = _plain(answer)
        if not isinstance(answer, dict):
            raise StorageError("COS GetBucketLifecycle gave an unusable answer")
        rules = _items(answer.get("Rule"))
        if not all(isinstance(rule, dict) for rule in rules):
            raise StorageError("COS GetBucketLifecycle gave an unusable answer")
        return [dict(rule) for rule in rules]

    def put_lifecycle(self, rules: list[dict[str, Any]]) -> None:
        if not rules:
            # A configuration needs at least one rule: no rules is no configuration.
            self._call(
                "DeleteBucketLifecycle",
                lambda: self._client.delete_bucket_lifecycle(Bucket=self._bucket),
            )
            return
        configuration = {"Rule": [dict(rule) for rule in rules]}
        self._call(
            "PutBucketLifecycle",
            lambda: self._client.put_bucket_lifecycle(
                Bucket=self._bucket, LifecycleConfiguration=configuration
            ),
        )

    # ------------------------------------------------------------ policy

    def policy(self) -> dict[str, Any] | None:
        try:
            answer = self._call(
                "GetBucketPolicy", lambda: self._client.get_bucket_policy(Bucket=self._bucket)
            )
        except _NotFound:
            return None  # NoSuchBucketPolicy: the bucket has none
        # The SDK gives the JSON document back as text under "Policy".
        try:
            document = json.loads(answer["Policy"])
        except (KeyError, TypeError, ValueError):
            raise StorageError("COS GetBucketPolicy gave an unusable answer") from None
        if not isinstance(document, dict):
            raise StorageError("COS GetBucketPolicy gave an unusable answer")
        return document

    def put_policy(self, document: dict[str, Any]) -> None:
        self._call(
            "PutBucketPolicy",
            lambda: self._client.put_bucket_policy(Bucket=self._bucket, Policy=dict(document)),
        )

    def _client_within(self, timeout_s: float | None) -> CosS3Client:
        """The store's client for None; else a client whose requests wait at most
        `timeout_s` for each connect and read, with no retry. The SDK takes a timeout only in
        its CosConfig, for every call of a client; a client costs microseconds, and each one
        uses the SDK's shared connection pool."""
        if timeout_s is None:
            return self._client
        return CosS3Client(self._config(Timeout=timeout_s), retry=0)

    # ------------------------------------------------------------ errors

    @staticmethod
    def _call(operation: str, call: Callable[[], T], timeout_s: float | None = None) -> T:
        """The SDK call's result; its failure as a StorageError. `from None`: the SDK's own
        exception text carries URLs and response bodies, and it must not ride along.
        `timeout_s`: the call's own timeout, when not TIMEOUT_S."""
        try:
            return call()
        except CosServiceError as error:
            status = error.get_status_code()
            code = _service_code(error)
            if status == 404 and operation in ("HeadObject", "GetObjectACL"):
                raise _NotFound from None
            # moto's 404 body is not COS's XML, so its code reads Unknown.
            if status == 404 and operation == "GetBucketLifecycle" and code in _NO_LIFECYCLE:
                raise _NotFound from None
            # COS documents no code of its own for a bucket without a policy (S3 says
            # NoSuchBucketPolicy): any 404 but a missing bucket's is no policy.
            if status == 404 and operation == "GetBucketPolicy" and code != "NoSuchBucket":
                raise _NotFound from None
            raise StorageError(f"COS {operation} failed: {status} {code}") from None
        except CosClientError as error:
            reason = _client_reason(error, TIMEOUT_S if timeout_s is None else timeout_s)
            raise StorageError(f"COS {operation} failed: {reason}") from None
        except Exception as error:  # noqa: BLE001 - an answer the SDK failed to parse, any type
            raise StorageError(
                f"COS {operation} gave an unusable answer ({type(error).__name__})"
            ) from None


class _NotFound(Exception):
    """A 404 the caller turns into an answer (no object, no lifecycle, no policy)."""


def _plain(answer: Any) -> Any:
    """The SDK's dict of an XML answer with namespaces dropped from its names: it strips
    COS's and one spelling of S3's, and S3-compatible stand-ins write the other spelling."""
    if isinstance(answer, dict):
        return {str(name).rpartition("}")[2]: _plain(value) for name, value in answer.items()}
    if isinstance(answer, list):
        return [_plain(item) for item in answer]
    return answer


def _to_all_users(grant: Any) -> bool:
    grantee = grant.get("Grantee") or {}
    named = (grantee.get("URI"), grantee.get("ID"))
    return grant.get("Permission") in _READS and any(name in _ALL_USERS for name in named)


def _items(value: Any) -> list[Any]:
    """A repeated XML element as a list: the SDK gives one occurrence as the item itself."""
    if value is None or value == "":
        return []
    return value if isinstance(value, list) else [value]


def _service_code(error: CosServiceError) -> str:
    try:
        code = error.get_error_code()
    except (KeyError, TypeError):  # a JSON or other body the SDK digested without a code
        return "Unknown"
    # Only COS's code itself: a word, never text that could quote the request.
    return code if isinstance(code, str) and code.isidentifier() else "Unknown"


def _client_reason(error: CosClientError, timeout_s: float) -> str:
    """What went wrong on our side of the wire, from the SDK's message (which also names the
    URL, so it is not passed on)."""
    text = str(error)
    if "timed out" in text or "Timeout" in text:
        return f"timed out after {timeout_s:.3g} s"
    if "Connection refused" in text or "Failed to establish" in text:
        return "connection refused"
    if "Connection aborted" in text or "RemoteDisconnected" in text or "reset" in text:
        return "connection closed without an answer"
    if "Max retries exceeded" in text or "NameResolution" in text:
        return "could not connect"
    return "client error"


def _iso_utc(text: str) -> datetime:
    """COS's ISO 8601 time (`2026-12-05T03:00:00.000Z`) as an aware UTC datetime (one
    without an offset taken as UTC, as COS means it); ValueError for no such time."""
    text = text.strip()
    moment = rfc3339(text) or rfc3339(text + "Z")
    if moment is None:
        raise ValueError(f"not an ISO 8601 time: {text[:40]!r}")
    return moment.astimezone(timezone.utc)
