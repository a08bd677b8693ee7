"""The port to the bucket, and the keys the backend writes.

Keys: `uploads/{user_id}/{id}` (client uploads) and `tasks/{task_id}/...` (outputs kept out
of the database). Nothing else is written by the backend, and nothing else is deleted.

An adapter raises only `StorageError` (the store could not be reached, or refused); its
message names the operation and the store's status or code, never a credential or a
presigned URL's signature.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

UPLOADS = "uploads/"
TASKS = "tasks/"
# The object ACL every upload is made with: readable only with the bucket owner's leave.
UPLOAD_ACL = "private"
# The storage class COS gives an object written without `x-cos-storage-class` (a bucket's
# default); HeadObject answers the header only for an object of another class.
STANDARD = "STANDARD"
# One DeleteObjects request takes at most this many keys (COS's and S3's limit).
DELETE_BATCH = 1000


def upload_key(user_id: str, upload_id: str) -> str:
    return f"{UPLOADS}{user_id}/{upload_id}"


def task_prefix(task_id: str) -> str:
    return f"{TASKS}{task_id}/"


class StorageError(Exception):
    """The store could not be reached or refused; the message says which operation."""


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size_bytes: int
    last_modified: datetime  # aware, UTC
    storage_class: str = STANDARD  # as COS names it: ARCHIVE, STANDARD_IA, ...


@dataclass(frozen=True)
class Listing:
    """One page of a listing: the objects, and where the next page starts (None: last)."""

    objects: list[ObjectInfo]
    next_marker: str | None


@dataclass(frozen=True)
class Presigned:
    """A URL a client or an upstream uses without credentials, with exactly these headers."""

    url: str = field(repr=False)  # carries the signature
    method: str
    headers: dict[str, str]
    expires_at: datetime  # aware, UTC


@dataclass(frozen=True)
class KeyFailure:
    key: str
    code: str


@dataclass(frozen=True)
class Deleted:
    """What one DeleteObjects request did: keys deleted, and per-key failures."""

    deleted: list[str]
    failed: list[KeyFailure]


class ObjectStore(Protocol):
    """One bucket. Built from the settings by `app.storage.store()`."""

    def put(self, key: str, data: bytes, content_type: str) -> None:
        """Write the object (replacing one already at `key`)."""
        ...

    def head(self, key: str, timeout_s: float | None = None) -> ObjectInfo | None:
        """The object's size, time and storage class; None when there is none at `key`. With
        `timeout_s` (a caller with a deadline): one attempt, waiting at most that long on each
        step of the exchange, rather than the adapter's own timeout and retry."""
        ...

    def public(self, key: str, timeout_s: float | None = None) -> bool | None:
        """Whether the object's ACL lets all users read it; None when there is no object at
        `key`. `timeout_s` as for `head`."""
        ...

    def presign_get(self, key: str, expires_s: int) -> Presigned: ...

    def presign_put(
        self, key: str, content_type: str, size_bytes: int, expires_s: int
    ) -> Presigned:
        """A PUT whose signature covers the Content-Type, the Content-Length and a private
        object ACL: the store refuses the upload with any other type, size or ACL."""
        ...

    def listing(self, prefix: str, marker: str | None = None, max_keys: int = 1000) -> Listing: ...

    def delete(self, keys: list[str]) -> Deleted:
        """One DeleteObjects request for at most DELETE_BATCH keys."""
        ...

    def lifecycle(self) -> list[dict[str, Any]]:
        """The bucket's lifecycle rules as the store gives them; [] when it has none."""
        ...

    def put_lifecycle(self, rules: list[dict[str, Any]]) -> None:
        """Replace the bucket's whole lifecycle configuration with `rules`."""
        ...

    def policy(self) -> dict[str, Any] | None:
        """The bucket policy's JSON document as the store gives it; None when it has none."""
        ...

    def put_policy(self, document: dict[str, Any]) -> None:
        """Replace the bucket's whole policy with `document`."""
        ...
