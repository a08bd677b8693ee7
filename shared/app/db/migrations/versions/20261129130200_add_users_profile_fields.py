"""Add the profile fields: nickname, avatar, gender.

Revision ID: 20261129130200
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "20261129130200"
down_revision = "20261129130100"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("nickname", sa.String(64), nullable=True))
        batch.add_column(sa.Column("avatar", sa.String(512), nullable=True))
        batch.add_column(
            sa.Column("gender", sa.String(8), nullable=False, server_default=sa.text("'unknown'"))
        )


def downgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.drop_column("gender")
        batch.drop_column("avatar")
        batch.drop_column("nickname")
