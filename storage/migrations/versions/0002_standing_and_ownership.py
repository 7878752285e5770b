"""requester standing; what the bot created; time-bound access, removal, extensions

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 02:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("access_requests") as table:
        table.add_column(sa.Column("requester_standing", sa.String(length=64), nullable=True))
        table.add_column(
            sa.Column("member_created_by_bot", sa.Boolean(), nullable=False, server_default=sa.text("false"))
        )
        table.add_column(sa.Column("invite_posted_at", sa.DateTime(timezone=True), nullable=True))
        table.add_column(sa.Column("requested_duration_s", sa.Integer(), nullable=True))
        table.add_column(sa.Column("granted_duration_s", sa.Integer(), nullable=True))
        for name in ("access_ends_at", "end_warning_due_at", "removal_due_at", "holder_check_due_at"):
            table.add_column(sa.Column(name, sa.DateTime(timezone=True), nullable=True))
        table.add_column(sa.Column("removal_attempts", sa.Integer(), nullable=False, server_default=sa.text("0")))
        table.add_column(sa.Column("removal_target", sa.String(length=16), nullable=True))
        table.add_column(sa.Column("removal_reason", sa.Text(), nullable=True))
        table.add_column(sa.Column("removal_actor_slack_id", sa.String(length=32), nullable=True))
        table.add_column(sa.Column("extends_request_id", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("access_requests") as table:
        for name in (
            "extends_request_id",
            "removal_actor_slack_id",
            "removal_reason",
            "removal_target",
            "removal_attempts",
            "holder_check_due_at",
            "removal_due_at",
            "end_warning_due_at",
            "access_ends_at",
            "granted_duration_s",
            "requested_duration_s",
        ):
            table.drop_column(name)
        table.drop_column("invite_posted_at")
        table.drop_column("member_created_by_bot")
        table.drop_column("requester_standing")
