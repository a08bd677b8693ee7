"""An idempotency key keeps the resource its first request produced, not an HTTP status:
the route that replays it chooses the status.

Expand only (README, "Deploying"): the release before this one names `status_code` in every
claim, record and lookup, and serves on the migrated schema until the deploy has updated
its function, and again after a rollback to it. So the column stays, given a default so that
rows written without it go in, and no code of this release names it
(`app.db.tables.RETIRED_COLUMNS`); a later deploy drops it. A database that ran this
migration when it dropped the column is left without it, which no release since reads.

Revision ID: 20261205120000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "20261205120000"
down_revision = "20261129170000"
branch_labels = None
depends_on = None


def _columns() -> set[str]:
    return {c["name"] for c in sa.inspect(op.get_bind()).get_columns("idempotency_keys")}


def upgrade() -> None:
    with op.batch_alter_table("idempotency_keys") as batch:
        batch.alter_column(
            "status_code",
            existing_type=sa.Integer(),
            existing_nullable=False,
            server_default=sa.text("0"),
        )


def downgrade() -> None:
    with op.batch_alter_table("idempotency_keys") as batch:
        if "status_code" in _columns():
            batch.alter_column(
                "status_code",
                existing_type=sa.Integer(),
                existing_nullable=False,
                server_default=None,
            )
        else:  # dropped by this migration's first form
            batch.add_column(
                sa.Column("status_code", sa.Integer(), nullable=False, server_default="201")
            )
