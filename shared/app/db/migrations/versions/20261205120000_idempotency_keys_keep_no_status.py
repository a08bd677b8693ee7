"""An idempotency key keeps the resource its first request produced, not an HTTP status:
the route that replays it chooses the status.

Revision ID: 20261205120000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "20261205120000"
down_revision = "20261129170000"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("idempotency_keys") as batch:
        batch.drop_column("status_code")


def downgrade() -> None:
    with op.batch_alter_table("idempotency_keys") as batch:
        batch.add_column(
            sa.Column("status_code", sa.Integer(), nullable=False, server_default="201")
        )
