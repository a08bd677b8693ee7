"""Create users: identity, role, invite code and referrer, membership, disabled flag.

Revision ID: 20261129120000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from app.db.types import UtcDateTime

revision = "20261129120000"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("phone", sa.String(20), nullable=True),
        sa.Column("role", sa.String(16), nullable=False, server_default=sa.text("'user'")),
        sa.Column("invite_code", sa.String(16), nullable=True),
        sa.Column("referrer_id", sa.String(32), nullable=True),
        sa.Column("membership_expires_at", UtcDateTime(), nullable=True),
        sa.Column("disabled", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.UniqueConstraint("phone", name="uq_users_phone"),
        sa.UniqueConstraint("invite_code", name="uq_users_invite_code"),
        mysql_charset="utf8mb4",
    )
    op.create_index("ix_users_referrer_id", "users", ["referrer_id"])


def downgrade() -> None:
    op.drop_table("users")
