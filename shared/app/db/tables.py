"""SQLAlchemy Core table definitions: the current shape of the schema.

Migrations in app/db/migrations/versions build this shape step by step; a test checks that
the migrated database and these definitions agree.
"""

from __future__ import annotations

from sqlalchemy import Boolean, Column, MetaData, String, Table, false, text

from app.db.types import UtcDateTime

metadata = MetaData()

users = Table(
    "users",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("phone", String(20), unique=True, nullable=True),
    Column("role", String(16), nullable=False, server_default=text("'user'")),
    Column("invite_code", String(16), unique=True, nullable=True),
    Column("referrer_id", String(32), nullable=True, index=True),
    Column("membership_expires_at", UtcDateTime(), nullable=True),
    Column("disabled", Boolean, nullable=False, server_default=false()),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
)

__all__ = ["metadata", "users"]
