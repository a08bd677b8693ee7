"""POST /admin/users/{id}/quota: an admin adds to or takes from a user's quota balance.

The change is a `grant` of kind `admin` (app.quota.service): it goes through the ledger,
never below zero. With an `Idempotency-Key` header the change is applied once per key (ledger
ref `admin:<key>`): a retry answers with the user as it is now, a different change under the
same key is 409.
"""

from __future__ import annotations

from app import profiles
from app.api.schemas.quota import QuotaAdjustIn
from app.api.schemas.users import UserOut, user_out
from app.http import Auth, Request, Router
from app.quota.service import grant

router = Router(tags=("admin",))

REF_PREFIX = "admin:"
KEY_MAX = 64 - len(REF_PREFIX)  # quota_ledger.ref is 64 characters


@router.post(
    "/admin/users/{id}/quota",
    auth=Auth.ADMIN,
    body=QuotaAdjustIn,
    response=UserOut,
    errors=(401, 403, 404, 409, 422),
    idempotency_key=KEY_MAX,
    summary="Add to or take from a user's quota balance (Idempotency-Key header optional)",
)
def adjust_quota(req: Request[QuotaAdjustIn, None]) -> UserOut:
    user_id = req.path_params["id"]
    key = req.idempotency_key(max_length=KEY_MAX)
    ref = None if key is None else REF_PREFIX + key
    result = grant(
        user_id, req.body.delta, kind="admin", reason=req.body.reason, ref=ref, actor=req.actor
    )
    req.extra_log.update(
        target_user=user_id, delta=req.body.delta, applied=result.applied, ledger_id=result.entry.id
    )
    return user_out(profiles.cached(user_id))
