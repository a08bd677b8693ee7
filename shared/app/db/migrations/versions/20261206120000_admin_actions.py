"""The admin actions' audit trail (app.audit): one row per change an admin makes through the
API, written in the change's own transaction: the admin, the action, its target, when, what
changed (small JSON, never a secret's value) and the request id. Indexed for "what was done
to X" and "what did admin Y do". A new table only: code of the previous release never
reads or writes it.

Revision ID: 20261206120000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from app.db.types import UtcDateTime

revision = "20261206120000"
down_revision = "20261206090000"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "admin_actions",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("at", UtcDateTime(), nullable=False),
        sa.Column("actor_id", sa.String(32), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("target", sa.String(64), nullable=False),
        sa.Column("changes", sa.JSON(), nullable=False),
        sa.Column("request_id", sa.String(64), nullable=False),
        mysql_collate="utf8mb4_bin",
    )
    op.create_index("ix_admin_actions_target_at", "admin_actions", ["target", "at"])
    op.create_index("ix_admin_actions_actor_at", "admin_actions", ["actor_id", "at"])


def downgrade() -> None:
    op.drop_table("admin_actions")
