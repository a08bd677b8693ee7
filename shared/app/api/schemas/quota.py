"""The shapes of a user's quota as admins change it (`POST /admin/users/{id}/quota`)."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, Field, StrictInt, StringConstraints

from app.api.schemas.users import In
from app.quota.service import QUOTA_MAX


def _nonzero(value: int) -> int:
    if value == 0:
        raise ValueError("must not be zero")
    return value


class QuotaAdjustIn(In):
    delta: Annotated[StrictInt, Field(ge=-QUOTA_MAX, le=QUOTA_MAX), AfterValidator(_nonzero)]
    reason: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
