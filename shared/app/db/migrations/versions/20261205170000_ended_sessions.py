"""Sessions ended by logout, logout-all, refresh reuse or disabling, kept while their access
tokens could still be presented: the database's answer to "has this session ended?" when
Redis, which holds the live sessions, cannot answer.

Revision ID: 20261205170000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from app.db.types import UtcDateTime

revision = "20261205170000"
down_revision = "20261205120000"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ended_sessions",
        sa.Column("sid", sa.String(32), primary_key=True),
        sa.Column("user_id", sa.String(32), nullable=False),
        sa.Column("ended_at", UtcDateTime(), nullable=False),
        mysql_collate="utf8mb4_bin",
    )
    op.create_index("ix_ended_sessions_ended_at", "ended_sessions", ["ended_at"])


def downgrade() -> None:
    op.drop_index("ix_ended_sessions_ended_at", table_name="ended_sessions")
    op.drop_table("ended_sessions")
