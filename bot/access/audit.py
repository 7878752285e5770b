"""The audit trail: one append-only row per event, echoed as a structured log line."""

from __future__ import annotations

import logging
from enum import StrEnum
from typing import Any

from sqlalchemy.orm import Session

from bot.core.clock import Clock
from storage.repository import append_audit

log = logging.getLogger("cf_access_bot.audit")


class AuditEventType(StrEnum):
    REQUESTED = "requested"
    APPROVED = "approved"
    DENIED = "denied"
    CANCELLED = "cancelled"
    EXPIRED = "expired"
    INVITE_SENT = "invite_sent"
    INVITE_FAILED = "invite_failed"
    INVITE_RETRIED = "invite_retried"
    INVITE_ADOPTED = "invite_adopted"
    INVITE_RESENT = "invite_resent"
    INVITE_ACCEPTED = "invite_accepted"
    INVITE_REVOKED = "invite_revoked"
    ALREADY_MEMBER = "already_member"
    REMINDER_SENT = "reminder_sent"
    DECISION_REFUSED = "decision_refused"
    DELIVERY_FAILED = "delivery_failed"
    ACCESS_ADDED = "access_added"
    ACCESS_ENDED = "access_ended"
    ACCESS_REVOKED = "access_revoked"
    ACCESS_EXTENDED = "access_extended"
    END_WARNING_SENT = "end_warning_sent"
    OFFBOARDED = "offboarded"
    TWO_FACTOR_NUDGED = "two_factor_nudged"
    REPORT_POSTED = "report_posted"


class AuditLog:
    def __init__(self, clock: Clock) -> None:
        self._clock = clock

    def record(
        self,
        session: Session,
        event: AuditEventType,
        *,
        request_id: int | None,
        actor_slack_id: str | None = None,
        actor_email: str | None = None,
        **details: Any,
    ) -> None:
        time = self._clock.now()
        append_audit(
            session,
            time=time,
            event=event.value,
            request_id=request_id,
            actor_slack_id=actor_slack_id,
            actor_email=actor_email,
            details=details,
        )
        log.info(
            event.value,
            extra={
                "audit_time": time.isoformat(),
                "request_id": request_id,
                "actor_slack_id": actor_slack_id,
                "actor_email": actor_email,
                "details": details,
            },
        )
