"""Upload routes: a presigned PUT for a file the user will name in a task's input."""

from __future__ import annotations

from app.api.schemas.uploads import UploadIn, UploadOut
from app.http import Auth, Request, Router
from app.storage import uploads

router = Router(tags=("storage",))


@router.post(
    "/uploads",
    auth=Auth.USER,
    body=UploadIn,
    response=UploadOut,
    status=201,
    errors=(422, 429),
    summary="A presigned PUT (15 minutes) for one file of a declared type and size",
)
def create_upload(req: Request[UploadIn, None]) -> UploadOut:
    made = uploads.create(req.user.user_id, req.body.content_type, req.body.size_bytes)
    req.extra_log.update(key=made.key)
    return UploadOut.model_validate(made, from_attributes=True)
