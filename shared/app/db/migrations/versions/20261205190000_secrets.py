"""Secrets stored encrypted: one envelope per row, sealed with a data key of its own and the
secret's name as context (`PUT /admin/secrets/{name}`, `make -s secret-put`). `version` grows
with each update, so an instance that keeps a value sees when it changed.

Revision ID: 20261205190000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from app.db.types import UtcDateTime

revision = "20261205190000"
down_revision = "20261205170000"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "secrets",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("envelope", sa.Text(), nullable=False),
        sa.Column("key_id", sa.String(128), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        mysql_collate="utf8mb4_bin",
    )


def downgrade() -> None:
    op.drop_table("secrets")
