"""Create quota_transactions: one saga row per task (reserved -> confirmed | cancelled).

Revision ID: 20261129140100
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from app.db.types import UtcDateTime

revision = "20261129140100"
down_revision = "20261129140000"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "quota_transactions",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("task_id", sa.String(32), nullable=False),
        sa.Column("user_id", sa.String(32), nullable=False),
        sa.Column("amount", sa.Integer, nullable=False),
        sa.Column("phase", sa.String(16), nullable=False),
        sa.Column("idempotent_done", sa.Boolean, nullable=False, server_default=sa.true()),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.UniqueConstraint("task_id", name="uq_quota_transactions_task_id"),
        mysql_charset="utf8mb4",
    )
    op.create_index("ix_quota_transactions_user_id", "quota_transactions", ["user_id"])
    op.create_index(
        "ix_quota_transactions_phase_updated", "quota_transactions", ["phase", "updated_at"]
    )


def downgrade() -> None:
    op.drop_table("quota_transactions")
