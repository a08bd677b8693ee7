"""Identifiers of rows and messages: random, URL-safe, never sequential."""

from __future__ import annotations

import re
import secrets

# token_urlsafe(16): 16 bytes in base64url without padding.
_SHAPE = re.compile(r"[A-Za-z0-9_-]{22}")


def new_id() -> str:
    """22 characters from 128 bits."""
    return secrets.token_urlsafe(16)


def is_id(value: str) -> bool:
    """Whether `value` has the shape `new_id` gives."""
    return _SHAPE.fullmatch(value) is not None
