"""One row per run of a maintenance job that deletes or changes data in bulk (cos-cleanup):
when it started and ended, how it ended, and what it did so far, updated as it goes so a
run that dies half way leaves what it had done.

Revision ID: 20261205230000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from app.db.types import UtcDateTime

revision = "20261205230000"
down_revision = "20261205220000"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "maintenance_runs",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("job", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("started_at", UtcDateTime(), nullable=False),
        sa.Column("finished_at", UtcDateTime(), nullable=True),
        sa.Column("scanned", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("deleted", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("deleted_bytes", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("failed", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("saved_cny_per_month", sa.Numeric(18, 6), nullable=False, server_default="0"),
        sa.Column("error", sa.String(500), nullable=True),
        # The job's name while the run is live, NULL once it ended: unique, so two runs of
        # one job never go at once (NULLs do not collide).
        sa.Column("live_job", sa.String(64), nullable=True, unique=True),
        mysql_collate="utf8mb4_bin",
    )
    op.create_index("ix_maintenance_runs_job_started", "maintenance_runs", ["job", "started_at"])


def downgrade() -> None:
    op.drop_table("maintenance_runs")
