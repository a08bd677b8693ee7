"""Seed the `demo` pipeline: simulated steps only, so a fresh install can run a task with no
upstream AI host. Admins replace or disable it with PUT /admin/pipelines/demo.

Revision ID: 20261129140700
"""

from __future__ import annotations

from datetime import datetime, timezone

import sqlalchemy as sa
from alembic import op

from app.db.types import UtcDateTime

revision = "20261129140700"
down_revision = "20261129140600"
branch_labels = None
depends_on = None

DEMO_STEPS = [
    {"id": "draft", "type": "sim", "duration_ms": 200, "fail": False},
    {
        "id": "variants",
        "type": "fork",
        "branches": [
            {"type": "sim", "duration_ms": 300, "fail": False},
            {"type": "sim", "duration_ms": 300, "fail": False},
            {"type": "sim", "duration_ms": 300, "fail": False},
        ],
    },
    {"id": "pick", "type": "sim", "duration_ms": 100, "fail": False},
]


def upgrade() -> None:
    pipelines = sa.table(
        "pipelines",
        sa.column("id", sa.String),
        sa.column("name", sa.String),
        sa.column("description", sa.String),
        sa.column("cost", sa.Integer),
        sa.column("enabled", sa.Boolean),
        sa.column("steps", sa.JSON),
        sa.column("created_at", UtcDateTime()),
        sa.column("updated_at", UtcDateTime()),
    )
    now = datetime.now(timezone.utc)
    op.bulk_insert(
        pipelines,
        [
            {
                "id": "demo",
                "name": "Demo",
                "description": "Simulated draft, three variants and a pick; calls no upstream.",
                "cost": 1,
                "enabled": True,
                "steps": DEMO_STEPS,
                "created_at": now,
                "updated_at": now,
            }
        ],
    )


def downgrade() -> None:
    op.execute(sa.text("DELETE FROM pipelines WHERE id = 'demo'"))
