"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-22 09:14:20.059140
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table(
        "access_requests",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("requester_slack_id", sa.String(length=32), nullable=False),
        sa.Column("requester_email", sa.String(length=254), nullable=False),
        sa.Column("account_id", sa.String(length=64), nullable=False),
        sa.Column("account_name", sa.String(length=200), nullable=False),
        sa.Column("requested_role_ids", sa.JSON(), nullable=False),
        sa.Column("requested_role_names", sa.JSON(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("granted_role_ids", sa.JSON(), nullable=True),
        sa.Column("granted_role_names", sa.JSON(), nullable=True),
        sa.Column("decided_by_slack_id", sa.String(length=32), nullable=True),
        sa.Column("decided_by_email", sa.String(length=254), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("decision_note", sa.Text(), nullable=True),
        sa.Column("cloudflare_member_id", sa.String(length=64), nullable=True),
        sa.Column("invite_due_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("invite_lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("invite_attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("invite_error", sa.Text(), nullable=True),
        sa.Column("invited_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("accepted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("approval_reminder_due_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("approval_reminders_sent", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("invite_check_due_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("invite_reminder_due_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("invite_reminders_sent", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("resend_offered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("slack_sync_due_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("access_requests", schema=None) as batch_op:
        batch_op.create_index("ix_requests_expires", ["status", "expires_at"], unique=False)
        batch_op.create_index("ix_requests_invite_check_due", ["status", "invite_check_due_at"], unique=False)
        batch_op.create_index("ix_requests_invite_due", ["status", "invite_due_at"], unique=False)
        batch_op.create_index("ix_requests_reminder_due", ["status", "approval_reminder_due_at"], unique=False)
        batch_op.create_index("ix_requests_requester", ["requester_slack_id", "created_at"], unique=False)
        batch_op.create_index("ix_requests_slack_sync_due", ["slack_sync_due_at"], unique=False)
        batch_op.create_index("ix_requests_status_account", ["status", "account_id"], unique=False)
        batch_op.create_index(
            "uq_open_request_per_account",
            ["requester_slack_id", "account_id"],
            unique=True,
            sqlite_where=sa.text("status IN ('approved', 'invited', 'pending')"),
            postgresql_where=sa.text("status IN ('approved', 'invited', 'pending')"),
        )

    op.create_table(
        "audit_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("request_id", sa.Integer(), nullable=True),
        sa.Column("event", sa.String(length=40), nullable=False),
        sa.Column("actor_slack_id", sa.String(length=32), nullable=True),
        sa.Column("actor_email", sa.String(length=254), nullable=True),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_audit_events_request_id"), ["request_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_audit_events_time"), ["time"], unique=False)

    op.create_table(
        "processed_events",
        sa.Column("event_id", sa.String(length=64), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("event_id"),
    )
    op.create_table(
        "request_messages",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("request_id", sa.Integer(), nullable=False),
        sa.Column("channel_id", sa.String(length=32), nullable=False),
        sa.Column("ts", sa.String(length=32), nullable=False),
        sa.Column("approver_slack_id", sa.String(length=32), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["request_id"], ["access_requests.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("request_messages", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_request_messages_request_id"), ["request_id"], unique=False)


def downgrade() -> None:

    with op.batch_alter_table("request_messages", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_request_messages_request_id"))

    op.drop_table("request_messages")
    op.drop_table("processed_events")
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_audit_events_time"))
        batch_op.drop_index(batch_op.f("ix_audit_events_request_id"))

    op.drop_table("audit_events")
    with op.batch_alter_table("access_requests", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_open_request_per_account",
            sqlite_where=sa.text("status IN ('approved', 'invited', 'pending')"),
            postgresql_where=sa.text("status IN ('approved', 'invited', 'pending')"),
        )
        batch_op.drop_index("ix_requests_status_account")
        batch_op.drop_index("ix_requests_slack_sync_due")
        batch_op.drop_index("ix_requests_requester")
        batch_op.drop_index("ix_requests_reminder_due")
        batch_op.drop_index("ix_requests_invite_due")
        batch_op.drop_index("ix_requests_invite_check_due")
        batch_op.drop_index("ix_requests_expires")

    op.drop_table("access_requests")
