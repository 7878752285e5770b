"""indexes for the grant sweeps (end warnings, removals, holder re-checks)

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23 04:16:00
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_INDEXES = {
    "ix_requests_end_warning_due": "end_warning_due_at",
    "ix_requests_removal_due": "removal_due_at",
    "ix_requests_holder_check_due": "holder_check_due_at",
}


def upgrade() -> None:
    for name, column in _INDEXES.items():
        op.create_index(name, "access_requests", ["status", column])


def downgrade() -> None:
    for name in _INDEXES:
        op.drop_index(name, table_name="access_requests")
