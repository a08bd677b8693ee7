"""A fake Tencent Cloud COS: a real HTTP server on 127.0.0.1 that checks every request's COS
signature as COS does, then hands it to moto's S3 app (served in this process on a side
port, as ../shared/SDK-NOTES.md says) and relays the answer in COS's shape.

- The signature is checked as tests/fakes/cos_signature.py says; COS's wire (operation
  names, `<Error>` answers) is tests/fakes/cos_wire.py.
- Requests name the bucket in `Host` (`<bucket>.cos.<region>.myqcloud.com`, what the SDK
  sends to COS_ENDPOINT) or, for presigned URLs, in the path (`/<bucket>/<key>`).
- Answers carry `x-cos-request-id` and `Server: tencent-cos`; COS signs no answer, and
  neither does the fake. XML answers lose moto's S3 namespace, as COS writes none; errors
  are COS's `<Error>` with Code, Message, Resource, RequestId and TraceId.
- `count("DeleteObjects")`: requests of that operation that arrived (refused, failed and
  retried ones included); `requests` lists each with its answer's status.
- Failures on demand: `fail_next(op, status=500, times=1)`; `fail_after(op, n)` lets `n`
  more requests of `op` through, then fails every one until `heal()`; `refuse_keys(keys)`
  makes DeleteObjects answer those keys with a per-key `<Error>` and keep them.
- Slowness on demand: `slow_next(op, seconds, after=0)` lets `after` more requests of `op`
  through at once, then answers the next one `seconds` late (a listing of a large bucket).
- `advance(seconds)` moves the fake's clock (an expired presigned URL without waiting).
- `plant(key, data, last_modified=)` writes an object straight into moto's backend in this
  process, then sets the `last_modified` of moto's `FakeKey` (moto stamps it at write and
  has no way to choose it over HTTP); `keys(prefix)` and `data(key)` read the backend.
- Object ACLs and the bucket policy as tests/fakes/cos_access.py says: an object written
  (PutObject, or PutObjectACL, which the fake answers itself) with an ACL that lets all
  users read is served to a request without a signature, as COS serves it; a PutObject or
  PutObjectACL a deny statement of the bucket policy names is 403 `AccessDenied`;
  GetObjectACL answers the ACL as COS writes it. A
  request parameter the signature does not list is not checked (as a header is not), so a
  presigned PUT's URL with `&acl` appended is a PutObjectACL. `acl(key)` gives the ACL
  headers an object was last written with; `policy()` the bucket policy, which the fake
  keeps itself (GET, PUT and DELETE `?policy`; 404 `NoSuchBucketPolicy` when none).
- PUT Object - Copy: a PUT of an object with `x-cos-copy-source` copies another object of
  the bucket to its key, authorised and refused by the policy as PutObjectCopy, as
  tests/fakes/cos_copy.py says.
- Storage classes: a PutObject's `x-cos-storage-class` is kept (`storage_class(key)`), and
  HeadObject answers it in that header, which COS omits for a STANDARD object (HEAD Object,
  cloud.tencent.com/document/product/436/7745). Only the header: a GET of an archived
  object is served as any other.
- `settings()`: COS_ENDPOINT, COS_BUCKET, COS_REGION and TENCENTCLOUD_SECRET_ID/KEY (and
  TENCENTCLOUD_SESSION_TOKEN when set) that point the adapter at it. The bucket, unique
  per fake, is created at start and removed at stop; `reset()` empties it.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import re
import secrets
import threading
import time
import warnings
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit
from xml.etree import ElementTree

from werkzeug.serving import WSGIRequestHandler, make_server

from tests.fakes.cos_access import acl_answer, acl_of, denied, publicly_readable
from tests.fakes.cos_copy import CopySource, copy_answer, copy_source, parse_source
from tests.fakes.cos_signature import authenticate
from tests.fakes.cos_wire import REGION, CosRefusal, default_code, operation, send, send_error
from tests.fakes.server import LocalServer

_S3_NAMESPACE = re.compile(rb' xmlns="http://s3\.amazonaws\.com/doc/2006-03-01/?"')
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "server", "date"}


@dataclass(frozen=True)
class Received:
    operation: str
    status: int
    code: str  # the error code answered, "" for a success


@dataclass
class _Failure:
    status: int
    code: str
    after: int  # requests still let through before this failure starts
    times: int | None  # failures left; None: until heal()


@dataclass
class _Slowness:
    seconds: float
    after: int  # requests still answered at once before the slow one


class _QuietMoto(WSGIRequestHandler):
    def log(self, type: str, message: str, *args: Any) -> None:
        return


class FakeCos(LocalServer):
    def __init__(
        self,
        *,
        bucket: str | None = None,
        secret_id: str | None = None,
        secret_key: str | None = None,
        session_token: str | None = None,
    ) -> None:
        self.bucket = bucket or f"ai-platform-test-{secrets.token_hex(4)}-1250000000"
        self.secret_id = secret_id or "AKID" + secrets.token_hex(16)
        self.secret_key = secret_key or secrets.token_urlsafe(24)
        self.session_token = session_token
        self.requests: list[Received] = []
        self._counts: Counter[str] = Counter()
        self._failures: dict[str, list[_Failure]] = {}
        self._slowness: dict[str, list[_Slowness]] = {}
        self._refused_keys: dict[str, str] = {}
        self._acls: dict[str, dict[str, str]] = {}
        self._classes: dict[str, str] = {}
        self._policy: bytes | None = None
        self._offset_s = 0.0
        self._lock = threading.Lock()
        self._moto: Any = None

    # ------------------------------------------------------------ life

    def start(self) -> FakeCos:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from moto.moto_server.werkzeug_app import create_backend_app

            app = create_backend_app("s3")
        self._moto = make_server("127.0.0.1", 0, app, threaded=True, request_handler=_QuietMoto)
        threading.Thread(target=self._moto.serve_forever, name="fake-cos-moto", daemon=True).start()
        connection = http.client.HTTPConnection("127.0.0.1", self._moto.server_port, timeout=10)
        connection.request("PUT", f"/{self.bucket}")
        assert connection.getresponse().status == 200, "moto did not create the bucket"
        connection.close()
        super().start()
        return self

    def stop(self) -> None:
        super().stop()
        if self._moto is not None:
            backend = self._backend()
            for key in list(backend.get_bucket(self.bucket).keys):
                backend.delete_object(self.bucket, key)
            backend.delete_bucket(self.bucket)
            self._moto.shutdown()
            self._moto.server_close()
            self._moto = None

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    def settings(self) -> dict[str, str]:
        env = {
            "COS_ENDPOINT": self.endpoint,
            "COS_BUCKET": self.bucket,
            "COS_REGION": REGION,
            "TENCENTCLOUD_SECRET_ID": self.secret_id,
            "TENCENTCLOUD_SECRET_KEY": self.secret_key,
        }
        if self.session_token:
            env["TENCENTCLOUD_SESSION_TOKEN"] = self.session_token
        return env

    # ------------------------------------------------------------ knobs

    def count(self, op: str) -> int:
        with self._lock:
            return self._counts[op]

    def counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)

    def reset(self) -> None:
        """An empty bucket without lifecycle or policy; no counts, failures or refused keys."""
        backend = self._backend()
        for key in list(backend.get_bucket(self.bucket).keys):
            backend.delete_object(self.bucket, key)
        backend.delete_bucket_lifecycle(self.bucket)
        with self._lock:
            self._acls.clear()
            self._classes.clear()
            self._policy = None
            self.requests.clear()
            self._counts.clear()
            self._failures.clear()
            self._slowness.clear()
            self._refused_keys.clear()
            self._offset_s = 0.0

    def fail_next(self, op: str, status: int = 500, *, times: int = 1, code: str = "") -> None:
        self._add_failure(op, _Failure(status, code or default_code(status), 0, times))

    def fail_after(self, op: str, successes: int, status: int = 500, *, code: str = "") -> None:
        """`successes` more requests of `op` are served; every one after fails until heal()."""
        self._add_failure(op, _Failure(status, code or default_code(status), successes, None))

    def slow_next(self, op: str, seconds: float, *, after: int = 0) -> None:
        with self._lock:
            self._slowness.setdefault(op, []).append(_Slowness(seconds, after))

    def heal(self) -> None:
        with self._lock:
            self._failures.clear()

    def refuse_keys(self, keys: Iterable[str], code: str = "AccessDenied") -> None:
        with self._lock:
            self._refused_keys.update(dict.fromkeys(keys, code))

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._offset_s += seconds

    def now(self) -> float:
        return time.time() + self._offset_s

    # ------------------------------------------------------------ the bucket's content

    def plant(self, key: str, data: bytes = b"", last_modified: datetime | None = None) -> None:
        stored = self._backend().put_object(self.bucket, key, data)
        with self._lock:
            self._acls.pop(key, None)
            self._classes.pop(key, None)
        if last_modified is not None:
            # moto keeps naive UTC datetimes
            stored.last_modified = last_modified.astimezone(timezone.utc).replace(tzinfo=None)

    def keys(self, prefix: str = "") -> list[str]:
        return sorted(
            k for k in self._backend().get_bucket(self.bucket).keys if k.startswith(prefix)
        )

    def data(self, key: str) -> bytes | None:
        stored = self._backend().get_bucket(self.bucket).keys.get(key)
        return None if stored is None else bytes(stored.value)

    def acl(self, key: str) -> dict[str, str] | None:
        """The ACL headers the object at `key` was last written with; None: never written
        through the fake."""
        with self._lock:
            found = self._acls.get(key)
        return None if found is None else dict(found)

    def storage_class(self, key: str) -> str:
        """The class the object at `key` was written with (STANDARD when none was named)."""
        with self._lock:
            return self._classes.get(key, "STANDARD")

    def policy(self) -> dict[str, Any] | None:
        with self._lock:
            stored = self._policy
        return None if stored is None else dict(json.loads(stored))

    def lifecycle_rules(self) -> list[dict[str, Any]]:
        """The rules as moto holds them: ID, prefix, status, expiration and abort days."""
        rules = self._backend().get_bucket(self.bucket).rules
        return [
            {
                "ID": rule.id,
                "Prefix": rule.filter.prefix if rule.filter is not None else rule.prefix,
                "Status": rule.status,
                "ExpirationDays": rule.expiration_days,
                "AbortDays": rule.aimu_days,
            }
            for rule in rules
        ]

    def _backend(self) -> Any:
        from moto.s3.models import s3_backends

        partition, account = s3_backends.bucket_accounts[self.bucket]
        return s3_backends[account][partition]

    # ------------------------------------------------------------ serving

    def _add_failure(self, op: str, failure: _Failure) -> None:
        with self._lock:
            self._failures.setdefault(op, []).append(failure)

    def _injected(self, op: str) -> _Failure | None:
        with self._lock:
            for failure in self._failures.get(op, []):
                if failure.after > 0:
                    failure.after -= 1
                    return None
                if failure.times is not None:
                    failure.times -= 1
                    if failure.times <= 0:
                        self._failures[op].remove(failure)
                return failure
        return None

    def _delay(self, op: str) -> float:
        with self._lock:
            for slowness in self._slowness.get(op, []):
                if slowness.after > 0:
                    slowness.after -= 1
                    return 0.0
                self._slowness[op].remove(slowness)
                return slowness.seconds
        return 0.0

    def _record(self, op: str, status: int, code: str = "") -> None:
        with self._lock:
            self._counts[op] += 1
            self.requests.append(Received(op, status, code))

    def handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                return

            def do_GET(self) -> None:
                fake._serve(self)

            do_PUT = do_POST = do_DELETE = do_HEAD = do_GET

        return Handler

    def _serve(self, request: BaseHTTPRequestHandler) -> None:
        body = request.rfile.read(int(request.headers.get("Content-Length") or 0))
        host = request.headers.get("Host", "")
        split = urlsplit(request.path)
        query = dict(parse_qsl(split.query, keep_blank_values=True))
        if host.endswith(".myqcloud.com"):
            bucket, raw_key = host.split(".", 1)[0], split.path.lstrip("/")
        else:
            bucket, _, raw_key = split.path.lstrip("/").partition("/")
        key = unquote(raw_key)
        source = copy_source(request.headers)
        op = operation(request.command, key, query, copying=source is not None)
        resource = f"{bucket}.cos.{REGION}.myqcloud.com/{key}"
        try:
            if bucket != self.bucket:
                raise CosRefusal(404, "NoSuchBucket", "The specified bucket does not exist.")
            authenticate(
                request.headers,
                request.command,
                key,
                query,
                secret_id=self.secret_id,
                secret_key=self.secret_key,
                session_token=self.session_token,
                now=self.now(),
                public=op in ("GetObject", "HeadObject") and publicly_readable(self.acl(key) or {}),
            )
            self._authorize(request, op, key)
            failure = self._injected(op)
            if failure is not None:
                raise CosRefusal(failure.status, failure.code, "Injected by the test.")
            time.sleep(self._delay(op))
            if op in ("PutObjectACL", "GetObjectACL"):
                self._object_acl(request, op, key)
                return
            if op.endswith("BucketPolicy"):
                self._bucket_policy(request, op, body)
                return
            if op == "PutObjectCopy" and source is not None:
                self._copy(request, key, parse_source(source))
                return
        except CosRefusal as refusal:
            self._record(op, refusal.status, refusal.code)
            send_error(request, refusal, resource)
            return
        status, headers, answer = self._forward(request, op, body)
        if op == "PutObject" and status == 200:
            chosen = request.headers.get("x-cos-storage-class")  # any case, as COS reads it
            with self._lock:
                self._acls[key] = acl_of(request.headers)
                self._classes.pop(key, None)
                if chosen:
                    self._classes[key] = chosen
        if op == "HeadObject" and status == 200 and self.storage_class(key) != "STANDARD":
            headers.append(("x-cos-storage-class", self.storage_class(key)))
        self._record(op, status)
        send(request, status, headers, answer)

    def _authorize(self, request: BaseHTTPRequestHandler, op: str, key: str) -> None:
        """The bucket policy's deny statements, for the writes that set an object's ACL."""
        if op not in ("PutObject", "PutObjectACL", "PutObjectCopy"):
            return
        appid = self.bucket.rpartition("-")[2]
        if denied(
            self.policy(),
            action=op,
            resource=f"qcs::cos:{REGION}:uid/{appid}:{self.bucket}/{key}",
            headers=dict(request.headers.items()),
        ):
            raise CosRefusal(403, "AccessDenied", "Access Denied.")

    def _bucket_policy(self, request: BaseHTTPRequestHandler, op: str, body: bytes) -> None:
        """Kept here, not in moto: moto would apply the document as an AWS policy, and read
        it only with AWS's element names."""
        if op == "PutBucketPolicy":
            try:
                document = json.loads(body)
            except ValueError:
                document = None
            if not isinstance(document, dict):
                raise CosRefusal(400, "InvalidArgument", "The policy is not a JSON object.")
            with self._lock:
                self._policy = body
            status, answer = 204, b""
        elif op == "DeleteBucketPolicy":
            with self._lock:
                self._policy = None
            status, answer = 204, b""
        else:
            with self._lock:
                stored = self._policy
            if stored is None:
                raise CosRefusal(404, "NoSuchBucketPolicy", "The bucket policy does not exist.")
            status, answer = 200, stored
        self._record(op, status)
        send(request, status, [("Content-Type", "application/json")], answer)

    def _copy(self, request: BaseHTTPRequestHandler, key: str, source: CopySource) -> None:
        """PUT Object - Copy (tests/fakes/cos_copy.py): the source's bytes at `key`, the
        request's body ignored."""
        if source.bucket != self.bucket:
            raise CosRefusal(404, "NoSuchBucket", "The specified bucket does not exist.")
        data = self.data(source.key)
        if data is None:
            raise CosRefusal(404, "NoSuchKey", "The specified key does not exist.")
        self._backend().put_object(self.bucket, key, data)
        chosen = request.headers.get("x-cos-storage-class")
        with self._lock:
            self._acls[key] = acl_of(request.headers)
            self._classes.pop(key, None)
            if chosen:
                self._classes[key] = chosen
        self._record("PutObjectCopy", 200)
        send(request, 200, [("Content-Type", "application/xml")], copy_answer(data))

    def _object_acl(self, request: BaseHTTPRequestHandler, op: str, key: str) -> None:
        if key not in self._backend().get_bucket(self.bucket).keys:
            raise CosRefusal(404, "NoSuchKey", "The specified key does not exist.")
        if op == "PutObjectACL":
            with self._lock:
                self._acls[key] = acl_of(request.headers)
            headers: list[tuple[str, str]] = []
            answer = b""
        else:
            headers, answer = acl_answer(self.acl(key) or {})
        self._record(op, 200)
        send(request, 200, headers, answer)

    def _forward(
        self, request: BaseHTTPRequestHandler, op: str, body: bytes
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        headers = {
            name: value
            for name, value in request.headers.items()
            if name.lower() not in _HOP_BY_HOP and name.lower() != "content-length"
        }
        # Checked here already; moto only wants to see that the request is not anonymous.
        headers.setdefault("Authorization", "q-sign-algorithm=sha1")
        refused: dict[str, str] = {}
        if op == "DeleteObjects" and self._refused_keys:
            body, refused = self._without_refused(body)
            headers = {k: v for k, v in headers.items() if k.lower() != "content-md5"}
            headers["Content-MD5"] = base64.b64encode(hashlib.md5(body).digest()).decode()
        assert self._moto is not None
        connection = http.client.HTTPConnection("127.0.0.1", self._moto.server_port, timeout=30)
        try:
            connection.request(request.command, request.path, body=body, headers=headers)
            reply = connection.getresponse()
            answer = reply.read()
            status = reply.status
            reply_headers = [
                (name, value)
                for name, value in reply.getheaders()
                if name.lower() not in _HOP_BY_HOP and not name.lower().startswith("x-amz")
            ]
        finally:
            connection.close()
        answer = _S3_NAMESPACE.sub(b"", answer)
        if refused:
            answer = _with_key_errors(answer, refused)
        return status, reply_headers, answer

    def _without_refused(self, body: bytes) -> tuple[bytes, dict[str, str]]:
        root = ElementTree.fromstring(body)
        refused: dict[str, str] = {}
        with self._lock:
            for element in list(root.findall("Object")):
                key = element.findtext("Key") or ""
                if key in self._refused_keys:
                    refused[key] = self._refused_keys[key]
                    root.remove(element)
        return ElementTree.tostring(root), refused


def _with_key_errors(answer: bytes, refused: Mapping[str, str]) -> bytes:
    root = ElementTree.fromstring(answer)
    for key, code in refused.items():
        error = ElementTree.SubElement(root, "Error")
        ElementTree.SubElement(error, "Key").text = key
        ElementTree.SubElement(error, "Code").text = code
        ElementTree.SubElement(error, "Message").text = "Access Denied."
    return b"<?xml version='1.0' encoding='utf-8' ?>\n" + ElementTree.tostring(root)
