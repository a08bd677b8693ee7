"""Add users.password_hash (bcrypt; null for accounts without a password).

Revision ID: 20261129130000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "20261129130000"
down_revision = "20261129120000"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("password_hash", sa.String(100), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.drop_column("password_hash")
