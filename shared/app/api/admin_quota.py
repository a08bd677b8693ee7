"""POST /admin/users/{id}/quota: an admin adds to or takes from a user's quota balance.

The change is a `grant` of kind `admin` (app.quota.service): it goes through the ledger,
never below zero. With an `Idempotency-Key` header the change is applied once per key (ledger
ref `admin:<key>`): a retry answers with the user as it is now, a different change under the
same key is 409.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictInt, StringConstraints

from app.errors import AppError, ErrorCode
from app.http import Auth, Request, Router
from app.identity.schemas import UserOut
from app.identity.users import public_user
from app.quota.service import QUOTA_MAX, grant

router = Router(tags=("admin",))

REF_PREFIX = "admin:"
KEY_MAX = 64 - len(REF_PREFIX)  # quota_ledger.ref is 64 characters


def _nonzero(value: int) -> int:
    if value == 0:
        raise ValueError("must not be zero")
    return value


class QuotaAdjustIn(BaseModel):
    model_config = ConfigDict(extra="ignore")

    delta: Annotated[StrictInt, Field(ge=-QUOTA_MAX, le=QUOTA_MAX), AfterValidator(_nonzero)]
    reason: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]


def _ref(key: str | None) -> str | None:
    if key is None:
        return None
    key = key.strip()
    if not key or len(key) > KEY_MAX or not key.isprintable():
        raise AppError(
            ErrorCode.VALIDATION_ERROR,
            "The Idempotency-Key header is not valid.",
            details=[
                {"loc": ["header", "Idempotency-Key"], "msg": f"1-{KEY_MAX} printable characters"}
            ],
        )
    return REF_PREFIX + key


@router.post(
    "/admin/users/{id}/quota",
    auth=Auth.ADMIN,
    body=QuotaAdjustIn,
    response=UserOut,
    errors=(401, 403, 404, 409, 422),
    summary="Add to or take from a user's quota balance (Idempotency-Key header optional)",
)
def adjust_quota(req: Request[QuotaAdjustIn, None]) -> UserOut:
    user_id = req.path_params["id"]
    ref = _ref(req.headers.get("idempotency-key"))
    result = grant(user_id, req.body.delta, kind="admin", reason=req.body.reason, ref=ref)
    req.extra_log.update(
        target_user=user_id, delta=req.body.delta, applied=result.applied, ledger_id=result.entry.id
    )
    return public_user(user_id)
