"""SQLAlchemy models: access requests, the Slack messages that show them, and the audit log."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, DateTime, Dialect, ForeignKey, Index, Integer, String, Text, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from storage.states import OPEN_STATUSES

_OPEN_SQL = "status IN (" + ", ".join(f"'{status.value}'" for status in sorted(OPEN_STATUSES)) + ")"


class UtcDateTime(TypeDecorator[datetime]):
    """Stored in UTC; always read back timezone-aware (SQLite drops the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime; every stored time must be timezone-aware")
        moment = value.astimezone(UTC)
        return moment.replace(tzinfo=None) if dialect.name == "sqlite" else moment

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UtcDateTime(), dict[str, Any]: JSON, list[str]: JSON}  # noqa: RUF012


class AccessRequest(Base):
    """One employee's request for membership of one Cloudflare account; `id` is the `#42` users see."""

    __tablename__ = "access_requests"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    status: Mapped[str] = mapped_column(String(16))
    requester_slack_id: Mapped[str] = mapped_column(String(32))
    requester_email: Mapped[str] = mapped_column(String(254))
    account_id: Mapped[str] = mapped_column(String(64))
    account_name: Mapped[str] = mapped_column(String(200))
    requested_role_ids: Mapped[list[str]]
    requested_role_names: Mapped[list[str]]
    reason: Mapped[str] = mapped_column(Text)
    # What Slack said of the requester when they asked ("member", "guest (multi-channel)", ...),
    # shown to the approvers.
    requester_standing: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]

    granted_role_ids: Mapped[list[str] | None]
    granted_role_names: Mapped[list[str] | None]
    decided_by_slack_id: Mapped[str | None] = mapped_column(String(32))
    decided_by_email: Mapped[str | None] = mapped_column(String(254))
    decided_at: Mapped[datetime | None]
    decision_note: Mapped[str | None] = mapped_column(Text)

    # Invite outbox: an approved request is due for sending at `invite_due_at`; a worker leases it
    # until `invite_lease_until` so that exactly one process sends it.
    cloudflare_member_id: Mapped[str | None] = mapped_column(String(64))
    # The bot acts (resend, revoke, end) only on what it created itself: a member its own POST
    # created (answered, or lost and adopted after a POST was sent) is marked here; a membership
    # found that was made in the dashboard is never deleted, re-sent or taken over.
    member_created_by_bot: Mapped[bool] = mapped_column(default=False, server_default=text("false"))
    # Set durably just before each POST: only after one was sent can a member found be the bot's own.
    invite_posted_at: Mapped[datetime | None]
    invite_due_at: Mapped[datetime | None]
    invite_lease_until: Mapped[datetime | None]
    invite_attempts: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    invite_error: Mapped[str | None] = mapped_column(Text)
    invited_at: Mapped[datetime | None]
    accepted_at: Mapped[datetime | None]
    closed_at: Mapped[datetime | None]

    # Scheduled work: each due time is claimed by a conditional update before anything is sent.
    approval_reminder_due_at: Mapped[datetime | None]
    approval_reminders_sent: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    expires_at: Mapped[datetime | None]
    invite_check_due_at: Mapped[datetime | None]
    invite_reminder_due_at: Mapped[datetime | None]
    invite_reminders_sent: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    resend_offered_at: Mapped[datetime | None]
    # Set when the thread root could not be updated in Slack; the sweep repairs it.
    slack_sync_due_at: Mapped[datetime | None]

    # Time-bound access: durations in seconds (None: permanent); the end is set at approval.
    requested_duration_s: Mapped[int | None] = mapped_column(Integer)
    granted_duration_s: Mapped[int | None] = mapped_column(Integer)
    access_ends_at: Mapped[datetime | None]
    end_warning_due_at: Mapped[datetime | None]
    # Removal (end, revoke, offboarding): claimed by a conditional update on this due time, so it
    # runs once across replicas; moved forward after a refusal so it is retried, never forgotten.
    removal_due_at: Mapped[datetime | None]
    removal_attempts: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    removal_target: Mapped[str | None] = mapped_column(String(16))  # "ended" or "revoked"
    removal_reason: Mapped[str | None] = mapped_column(Text)
    removal_actor_slack_id: Mapped[str | None] = mapped_column(String(32))
    # An extension is a request of its own, linked to the grant it extends ("extends #12").
    extends_request_id: Mapped[int | None] = mapped_column(Integer)
    # Offboarding: when the holder's Slack standing is next checked (one users.info per interval).
    holder_check_due_at: Mapped[datetime | None]

    # The access model the request was filed in ("roles" or "policies"; None: filed before there
    # was a choice, i.e. roles). In the policies model the role ids and names above are permission
    # groups, and a zone-scoped request names its zones (ids to grant, names to show).
    access_model: Mapped[str | None] = mapped_column(String(16))
    zone_ids: Mapped[list[str] | None]
    zone_names: Mapped[list[str] | None]
    # The resource group the policy was granted on (policies model), found or created at the invite.
    resource_group_id: Mapped[str | None] = mapped_column(String(64))
    # Access added to a membership that existed before (a PUT, never a new invite): exactly what was
    # added (recorded before the PUT, so a lost answer is recognised), removed again at the end.
    access_added: Mapped[dict[str, Any] | None]
    member_added_to: Mapped[bool] = mapped_column(default=False, server_default=text("false"))

    __table_args__ = (
        Index(
            "uq_open_request_per_account",
            "requester_slack_id",
            "account_id",
            unique=True,
            sqlite_where=text(_OPEN_SQL),
            postgresql_where=text(_OPEN_SQL),
        ),
        Index("ix_requests_requester", "requester_slack_id", "created_at"),
        Index("ix_requests_status_account", "status", "account_id"),
        Index("ix_requests_reminder_due", "status", "approval_reminder_due_at"),
        Index("ix_requests_expires", "status", "expires_at"),
        Index("ix_requests_invite_due", "status", "invite_due_at"),
        Index("ix_requests_invite_check_due", "status", "invite_check_due_at"),
        Index("ix_requests_slack_sync_due", "slack_sync_due_at"),
        # The grant sweeps (end warnings, removals, holder re-checks) must not scan the table.
        Index("ix_requests_end_warning_due", "status", "end_warning_due_at"),
        Index("ix_requests_removal_due", "status", "removal_due_at"),
        Index("ix_requests_holder_check_due", "status", "holder_check_due_at"),
    )


class RequestMessage(Base):
    """A Slack message that shows a request: its thread root in a channel or in one approver's DM."""

    __tablename__ = "request_messages"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    request_id: Mapped[int] = mapped_column(ForeignKey("access_requests.id", ondelete="CASCADE"), index=True)
    channel_id: Mapped[str] = mapped_column(String(32))
    ts: Mapped[str] = mapped_column(String(32))
    approver_slack_id: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime]


class AuditEvent(Base):
    """Append-only: rows are inserted, never updated or deleted."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    time: Mapped[datetime] = mapped_column(index=True)
    request_id: Mapped[int | None] = mapped_column(Integer, index=True)
    event: Mapped[str] = mapped_column(String(40))
    actor_slack_id: Mapped[str | None] = mapped_column(String(32))
    actor_email: Mapped[str | None] = mapped_column(String(254))
    details: Mapped[dict[str, Any]]


class ProcessedEvent(Base):
    """Events API deliveries already handled, so Slack's retries are not processed twice."""

    __tablename__ = "processed_events"

    event_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    received_at: Mapped[datetime]


class HomeViewer(Base):
    """People who have opened the bot's Home tab. Only their tabs are republished after a change:
    anyone else's tab is published when they first open it (`app_home_opened`), so publishing it
    earlier would be a Slack call nobody sees."""

    __tablename__ = "home_viewers"

    slack_user_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    opened_at: Mapped[datetime]


class ScheduledRun(Base):
    """A job that runs once across replicas and restarts: who holds it now, when it last ran, and
    what that run found (the access review keeps its counts here for the approvers' Home tab)."""

    __tablename__ = "scheduled_runs"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    last_run_at: Mapped[datetime | None]
    claimed_until: Mapped[datetime | None]
    result: Mapped[dict[str, Any] | None]
