"""Index users for the admins' list, newest first (`created_at, id`: a page is read in index
order, not a sort of every user), and for the admins who can act (`role, disabled`: found
without reading, or waiting for, any other user's row). Indexes only: the release before
reads the same rows, and MariaDB adds an index to InnoDB while the table is written.

Revision ID: 20261207090000
"""

from __future__ import annotations

from alembic import op

revision = "20261207090000"
down_revision = "20261206120000"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_users_created", "users", ["created_at", "id"])
    op.create_index("ix_users_role_disabled", "users", ["role", "disabled"])


def downgrade() -> None:
    op.drop_index("ix_users_role_disabled", table_name="users")
    op.drop_index("ix_users_created", table_name="users")
