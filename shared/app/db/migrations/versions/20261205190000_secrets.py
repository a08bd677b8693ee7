"""Secrets stored sealed: one envelope per name (`enc:v1:...`, its own data key, opened with
the name as its context), the key it is sealed under, and a version that counts its
updates. Read by `secret:NAME` settings and by pipelines; written by `PUT /admin/secrets`
and `make -s secret-put`.

Revision ID: 20261205190000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

from app.db.types import UtcDateTime

revision = "20261205190000"
down_revision = "20261205170000"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "secrets",
        sa.Column(
            "name",
            sa.String(64).with_variant(
                mysql.VARCHAR(64, collation="utf8mb4_bin"), "mysql", "mariadb"
            ),
            primary_key=True,
        ),
        sa.Column("envelope", sa.Text(), nullable=False),
        sa.Column("key_id", sa.String(128), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        mysql_collate="utf8mb4_bin",
    )


def downgrade() -> None:
    op.drop_table("secrets")
