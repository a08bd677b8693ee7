"""Create idempotency_keys: the first answer to a keyed request, per user and scope, 24 h.

Revision ID: 20261129140600
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

from app.db.types import UtcDateTime

revision = "20261129140600"
down_revision = "20261129140500"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "idempotency_keys",
        sa.Column("user_id", sa.String(32), primary_key=True),
        sa.Column("scope", sa.String(32), primary_key=True),
        # compared byte for byte: `AbC` and `abc` are different keys (SQLite is binary)
        sa.Column(
            "key",
            sa.String(255).with_variant(
                mysql.VARCHAR(255, collation="utf8mb4_bin"), "mysql", "mariadb"
            ),
            primary_key=True,
        ),
        sa.Column("request_hash", sa.String(64), nullable=False),
        sa.Column("status_code", sa.Integer, nullable=False),
        sa.Column("response", sa.JSON, nullable=False),
        sa.Column("resource_id", sa.String(32), nullable=True),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("expires_at", UtcDateTime(), nullable=False),
        mysql_charset="utf8mb4",
    )
    op.create_index("ix_idempotency_keys_expires", "idempotency_keys", ["expires_at"])


def downgrade() -> None:
    op.drop_table("idempotency_keys")
