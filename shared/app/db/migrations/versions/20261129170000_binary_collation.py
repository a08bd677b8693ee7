"""Compare ids, codes, keys and refs byte for byte: every table to utf8mb4_bin on MySQL.

A case-insensitive collation (the server default, utf8mb4_general_ci) makes `Key-AbC` and
`key-abc` the same idempotency key or ledger ref, and ids that differ only in case collide.
Tables created by later migrations must pass `mysql_collate="utf8mb4_bin"`; a test checks.

Revision ID: 20261129170000
"""

from __future__ import annotations

from alembic import op

revision = "20261129170000"
down_revision = "20261129140700"
branch_labels = None
depends_on = None

TABLES = (
    "users",
    "invite_codes",
    "quota_transactions",
    "quota_ledger",
    "pipelines",
    "tasks",
    "task_steps",
    "idempotency_keys",
)


def _convert(collation: str) -> None:
    if op.get_bind().dialect.name != "mysql":
        return  # SQLite compares text byte for byte already
    for table in TABLES:
        op.execute(f"ALTER TABLE {table} CONVERT TO CHARACTER SET utf8mb4 COLLATE {collation}")


def upgrade() -> None:
    _convert("utf8mb4_bin")


def downgrade() -> None:
    _convert("utf8mb4_unicode_ci")
