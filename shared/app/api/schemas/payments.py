"""The shapes of plans and orders as clients and admins see them."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

# A plan's price is charged in one payment: 1 fen up to 1,000,000 yuan.
PRICE_MAX_FEN = 100_000_000
DURATION_MAX_DAYS = 3660
# The quota columns are INT: app.quota.service.QUOTA_MAX (not imported: GET /plans would
# load the database with it).
QUOTA_MAX = 2**31 - 1


class PlanIn(BaseModel):
    # Strict: money and durations are JSON integers, `enabled` a JSON boolean ("yes" and
    # "10" are refused rather than read as something).
    model_config = ConfigDict(extra="forbid", strict=True)

    name: str = Field(min_length=1, max_length=100)
    price_fen: int = Field(ge=1, le=PRICE_MAX_FEN)
    duration_days: int = Field(ge=1, le=DURATION_MAX_DAYS)
    quota: int = Field(ge=0, le=QUOTA_MAX)
    enabled: bool = True


class PlanOut(BaseModel):
    id: str
    name: str
    price_fen: int
    duration_days: int
    quota: int


class AdminPlanOut(PlanOut):
    enabled: bool
    updated_at: str


class PlanList(BaseModel):
    items: list[PlanOut]
    next_cursor: str | None = None


class OrderIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    plan_id: str = Field(min_length=1, max_length=64)
    channel: Literal["wechat", "alipay"]


class OrderOut(BaseModel):
    id: str
    plan_id: str
    channel: Literal["wechat", "alipay"]
    amount_fen: int
    status: Literal["pending", "paid", "closed"]
    code_url: str | None
    qr_code: str | None
    created_at: str
    paid_at: str | None
    expires_at: str


class WechatNotifyAnswer(BaseModel):
    """What WeChat Pay is answered: SUCCESS (200), or FAIL with why (400, 401)."""

    code: Literal["SUCCESS", "FAIL"]
    message: str
