"""Create quota_ledger: append-only, one row per change to a user's balance or reserved.

`ref` is unique when set, so a grant carrying the id of what paid for it (an order, an
admin request) can be applied once only.

Revision ID: 20261129140200
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from app.db.types import UtcDateTime

revision = "20261129140200"
down_revision = "20261129140100"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "quota_ledger",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("user_id", sa.String(32), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("balance_delta", sa.Integer, nullable=False),
        sa.Column("reserved_delta", sa.Integer, nullable=False),
        sa.Column("balance_after", sa.Integer, nullable=False),
        sa.Column("reserved_after", sa.Integer, nullable=False),
        sa.Column("task_id", sa.String(32), nullable=True),
        sa.Column("ref", sa.String(64), nullable=True),
        sa.Column("reason", sa.String(200), nullable=True),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.UniqueConstraint("ref", name="uq_quota_ledger_ref"),
        mysql_charset="utf8mb4",
    )
    op.create_index("ix_quota_ledger_user_created", "quota_ledger", ["user_id", "created_at"])
    op.create_index("ix_quota_ledger_task_id", "quota_ledger", ["task_id"])


def downgrade() -> None:
    op.drop_table("quota_ledger")
