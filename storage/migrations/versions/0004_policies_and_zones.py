"""the access model (roles or policies), zone scope, and access added to existing members

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("access_requests") as table:
        table.add_column(sa.Column("access_model", sa.String(length=16), nullable=True))
        table.add_column(sa.Column("zone_ids", sa.JSON(), nullable=True))
        table.add_column(sa.Column("zone_names", sa.JSON(), nullable=True))
        table.add_column(sa.Column("resource_group_id", sa.String(length=64), nullable=True))
        table.add_column(sa.Column("access_added", sa.JSON(), nullable=True))
        table.add_column(sa.Column("member_added_to", sa.Boolean(), nullable=False, server_default=sa.text("false")))


def downgrade() -> None:
    with op.batch_alter_table("access_requests") as table:
        for name in ("member_added_to", "access_added", "resource_group_id", "zone_names", "zone_ids", "access_model"):
            table.drop_column(name)
