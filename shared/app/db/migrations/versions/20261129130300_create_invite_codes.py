"""Create invite_codes: the pool of pre-generated codes new users claim.

Revision ID: 20261129130300
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from app.db.types import UtcDateTime

revision = "20261129130300"
down_revision = "20261129130200"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "invite_codes",
        sa.Column("code", sa.String(16), primary_key=True),
        sa.Column("claimed_by", sa.String(32), nullable=True),
        sa.Column("claimed_at", UtcDateTime(), nullable=True),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        mysql_charset="utf8mb4",
    )
    op.create_index("ix_invite_codes_claimed_by", "invite_codes", ["claimed_by"])


def downgrade() -> None:
    op.drop_table("invite_codes")
