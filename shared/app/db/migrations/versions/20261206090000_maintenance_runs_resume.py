"""A maintenance run that stops for its time budget says so (`stopped_early`) and where the
next run goes on from (`resume_after`: the last key it went through), so a bucket too large
for one run is cleaned over several, each going on where the last one stopped.

Revision ID: 20261206090000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "20261206090000"
down_revision = "20261205230000"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("maintenance_runs") as batch:
        batch.add_column(
            sa.Column("stopped_early", sa.Boolean, nullable=False, server_default=sa.false())
        )
        batch.add_column(sa.Column("resume_after", sa.String(1024), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("maintenance_runs") as batch:
        batch.drop_column("resume_after")
        batch.drop_column("stopped_early")
