"""The uploads each task's input names: one row per (task, key), written with the task by
POST /tasks, read by cos-cleanup to tell a named upload from an orphan.

Revision ID: 20261205220000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "20261205220000"
down_revision = "20261205210000"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "task_uploads",
        sa.Column("task_id", sa.String(32), nullable=False),
        sa.Column(
            "key",
            sa.String(255).with_variant(
                mysql.VARCHAR(255, collation="utf8mb4_bin"), "mysql", "mariadb"
            ),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("task_id", "key"),
        mysql_collate="utf8mb4_bin",
    )
    op.create_index("ix_task_uploads_key", "task_uploads", ["key"])


def downgrade() -> None:
    op.drop_table("task_uploads")
