"""The shapes of an upload: what a client declares, and the presigned PUT it gets."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class UploadIn(BaseModel):
    # A missing field or a wrong type is 422 VALIDATION_ERROR; a type or size the storage
    # does not take is 422 UPLOAD_INVALID (app.storage.uploads).
    model_config = ConfigDict(extra="forbid", strict=True)

    content_type: str
    size_bytes: int


class UploadOut(BaseModel):
    key: str
    url: str
    method: str
    headers: dict[str, str]
    expires_at: str
