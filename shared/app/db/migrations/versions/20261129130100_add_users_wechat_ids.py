"""Add users.wechat_openid (unique: concurrent first logins make one user) and wechat_unionid.

Revision ID: 20261129130100
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "20261129130100"
down_revision = "20261129130000"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("wechat_openid", sa.String(64), nullable=True))
        batch.add_column(sa.Column("wechat_unionid", sa.String(64), nullable=True))
        batch.create_unique_constraint("uq_users_wechat_openid", ["wechat_openid"])
        batch.create_index("ix_users_wechat_unionid", ["wechat_unionid"])


def downgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.drop_index("ix_users_wechat_unionid")
        batch.drop_constraint("uq_users_wechat_openid", type_="unique")
        batch.drop_column("wechat_unionid")
        batch.drop_column("wechat_openid")
