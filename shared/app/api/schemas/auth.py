"""The shapes of the sign-in routes (API.md `TokenPair`): SMS codes, register, login (password
or code), WeChat login, refresh."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field

from app.api.schemas.users import (
    Avatar,
    In,
    InviteCode,
    Nickname,
    Password,
    Phone,
    SmsCode,
    UserId,
    UserOut,
)
from app.identity.sms import Purpose


class TokenPair(BaseModel):
    access_token: str
    refresh_token: str
    token_type: Literal["Bearer"] = "Bearer"  # noqa: S105 - the scheme name
    expires_in: int
    refresh_expires_in: int
    user: UserOut
    is_new_user: bool


class SmsCodeIn(In):
    phone: Phone
    purpose: Purpose


class SmsCodeOut(BaseModel):
    cooldown_s: int
    expires_in: int


class RegisterIn(In):
    phone: Phone
    password: Password
    code: SmsCode
    referrer_id: UserId | None = None
    invite_code: InviteCode | None = None
    nickname: Nickname | None = None


class LoginIn(In):
    """Password or code; the password wins when both are sent."""

    phone: Phone
    password: Password | None = None
    code: SmsCode | None = None


class WechatLoginIn(In):
    code: Annotated[str, Field(min_length=1, max_length=128)]
    nickname: Nickname | None = None
    avatar: Avatar | None = None
    invite_code: InviteCode | None = None


class RefreshIn(In):
    refresh_token: Annotated[str, Field(min_length=1, max_length=4096)]
