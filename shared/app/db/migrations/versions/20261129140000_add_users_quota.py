"""Add users.quota_balance and users.quota_reserved (the saga moves quota between them).

Revision ID: 20261129140000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "20261129140000"
down_revision = "20261129130300"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(
            sa.Column("quota_balance", sa.Integer, nullable=False, server_default=sa.text("0"))
        )
        batch.add_column(
            sa.Column("quota_reserved", sa.Integer, nullable=False, server_default=sa.text("0"))
        )


def downgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.drop_column("quota_reserved")
        batch.drop_column("quota_balance")
