"""The shapes of the admin's secrets: a value goes in, and only a name and a time come out."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class SecretIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # 1 to 4096 bytes of UTF-8: the characters are bounded here, the bytes by app.vault.
    value: str = Field(min_length=1, max_length=4096)


class SecretOut(BaseModel):
    name: str
    updated_at: str
