"""The shapes of the user resource (API.md `User`): the profile, its changes, the admin's
list and changes, and the fields the identity routes share (phones, passwords, nicknames).

Input models do their own normalisation (phones, nicknames, passwords) so a bad value is a
422 before any service runs. No response model has a field for a password hash, an SMS code
or a WeChat session_key, so none can leak through one.
"""

from __future__ import annotations

import unicodedata
from typing import Annotated

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    model_validator,
)

from app.http.models import PageQuery
from app.identity import phones
from app.profiles import Gender, Role, User

PASSWORD_MIN_BYTES = 8
PASSWORD_MAX_BYTES = 72  # bcrypt ignores (5.x: refuses) anything past 72 bytes


def _phone(value: str) -> str:
    normalized = phones.normalize(value)
    if normalized is None:
        raise ValueError("must be a mainland mobile number (11 digits, optional +86)")
    return normalized


def _password(value: str) -> str:
    size = len(value.encode("utf-8"))
    if not PASSWORD_MIN_BYTES <= size <= PASSWORD_MAX_BYTES:
        raise ValueError(
            f"must be {PASSWORD_MIN_BYTES} to {PASSWORD_MAX_BYTES} bytes (UTF-8), got {size}"
        )
    return value


def _nickname(value: str) -> str:
    trimmed = value.strip()
    if not 1 <= len(trimmed) <= 32:
        raise ValueError("must be 1 to 32 characters after trimming")
    # Cc: control characters, Cf: format characters (bidi overrides, zero-width joiners).
    if any(unicodedata.category(ch) in ("Cc", "Cf") for ch in trimmed):
        raise ValueError("must not contain control characters")
    return trimmed


def _avatar(value: str) -> str:
    if len(value) > 512:
        raise ValueError("must be at most 512 characters")
    if not value.startswith("https://") or len(value) <= len("https://"):
        raise ValueError("must be an https:// URL")
    if any(ch.isspace() or unicodedata.category(ch) == "Cc" for ch in value):
        raise ValueError("must not contain spaces or control characters")
    return value


def _invite_code(value: str) -> str:
    code = value.strip().upper()
    if not 1 <= len(code) <= 16:
        raise ValueError("must be 1 to 16 characters")
    return code


# The `max_length` of a field is a cheap bound checked before its validator; the document
# describes what the validator accepts (`json_schema_extra`), so generated clients and
# fuzzers send values that reach the services. Phones: the contract's two spellings (spaces
# and dashes between the digits are accepted too). Passwords: 8-72 bytes of UTF-8, which
# JSON Schema can only bound in characters.
PHONE_SPELLING = r"^(\+86)?1[3-9][0-9]{9}$"
AVATAR_URL = r"^https://[^\s\x00-\x1f\x7f-\x9f]+$"
Phone = Annotated[
    str,
    Field(max_length=32, json_schema_extra={"pattern": PHONE_SPELLING}),
    AfterValidator(_phone),
]
Password = Annotated[
    str,
    Field(
        max_length=256,
        json_schema_extra={
            "minLength": PASSWORD_MIN_BYTES,
            "maxLength": PASSWORD_MAX_BYTES,
            "description": "8 to 72 bytes as UTF-8",
        },
    ),
    AfterValidator(_password),
]
Nickname = Annotated[str, Field(max_length=256), AfterValidator(_nickname)]
Avatar = Annotated[
    str,
    Field(max_length=2048, json_schema_extra={"maxLength": 512, "pattern": AVATAR_URL}),
    AfterValidator(_avatar),
]
InviteCode = Annotated[str, Field(max_length=64), AfterValidator(_invite_code)]
SmsCode = Annotated[str, Field(min_length=1, max_length=16)]
UserId = Annotated[str, Field(min_length=1, max_length=32)]


class In(BaseModel):
    """A request body: a field the contract does not define is `422`, naming it (a typo
    must not pass for an omission)."""

    model_config = ConfigDict(extra="forbid")


class QuotaOut(BaseModel):
    balance: int
    reserved: int


class MembershipOut(BaseModel):
    plan_id: str | None = None
    expires_at: str


class UserOut(BaseModel):
    id: str
    phone: str | None
    nickname: str | None
    avatar: str | None
    gender: Gender
    role: Role
    invite_code: str | None
    referrer_id: str | None
    quota: QuotaOut
    membership: MembershipOut | None
    created_at: str


class ProfilePatch(In):
    """Fields left out stay as they are; nickname or avatar sent as null clear the field."""

    nickname: Nickname | None = None
    avatar: Avatar | None = None
    gender: Gender | None = None

    @model_validator(mode="after")
    def _gender_not_null(self) -> ProfilePatch:
        if "gender" in self.model_fields_set and self.gender is None:
            raise ValueError("gender may not be null")
        return self


class AdminUserPatch(In):
    role: Role | None = None
    disabled: bool | None = None


class AdminUsersQuery(PageQuery):
    phone: Phone | None = None


def user_out(user: User) -> UserOut:
    membership = None
    if user.membership_expires_at is not None:
        membership = MembershipOut(
            plan_id=user.membership_plan_id, expires_at=user.membership_expires_at
        )
    return UserOut(
        id=user.id,
        phone=user.phone,
        nickname=user.nickname,
        avatar=user.avatar,
        gender=user.gender,
        role=user.role,
        invite_code=user.invite_code,
        referrer_id=user.referrer_id,
        quota=QuotaOut(balance=user.quota_balance, reserved=user.quota_reserved),
        membership=membership,
        created_at=user.created_at,
    )
