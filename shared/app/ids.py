"""Identifiers of rows and messages: random, URL-safe, never sequential."""

from __future__ import annotations

import secrets


def new_id() -> str:
    """22 characters from 128 bits."""
    return secrets.token_urlsafe(16)
