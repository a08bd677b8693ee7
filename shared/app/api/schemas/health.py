"""The shape of `GET /health`: each dependency's check, and the verdict."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel


class HealthOut(BaseModel):
    status: Literal["ok", "degraded"]
    checks: dict[str, str]
