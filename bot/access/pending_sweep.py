"""Sweep work on pending requests: remind approvers, and expire what waited too long."""

from __future__ import annotations

import logging

from bot.access.audit import AuditEventType
from bot.access.services import Services
from bot.access.state_change import change_state
from bot.core.durations import format_duration
from bot.slack.formatting import addressed, escape, number
from storage.models import AccessRequest
from storage.repository import ONE_MORE, claim_due
from storage.states import RequestStatus

log = logging.getLogger(__name__)


class PendingSweep:
    def __init__(self, services: Services, *, batch: int) -> None:
        self.services = services
        self.batch = batch

    def remind_approvers(self) -> int:
        """One reminder per request per APPROVAL_REMINDER_AFTER, claimed before it is sent."""
        services = self.services
        now = services.clock.now()
        interval = services.settings.approval_reminder_after
        with services.db.session() as session:
            claimed = claim_due(
                session,
                RequestStatus.PENDING,
                AccessRequest.approval_reminder_due_at,
                now,
                limit=self.batch,
                next_due=now + interval,
                approval_reminders_sent=ONE_MORE,
            )
        for request in claimed:
            if request.expires_at is not None and request.expires_at <= now:
                continue  # expiring in this sweep: the expiry message says it all
            self._remind(request)
        return len(claimed)

    def _remind(self, request: AccessRequest) -> None:
        services = self.services
        approver_ids = sorted(services.directory.approver_ids_to_tell(request.account_id))
        waited = format_duration(services.clock.now() - request.created_at)
        text = (
            f":bell: Reminder: {addressed(approver_ids, ', ')}request {number(request.id)} for "
            f"*{escape(request.account_name)}* has waited {waited} for a decision."
        )
        services.notifier.reply(request.id, text)
        if services.settings.approver_dm_mode:
            for approver_id in approver_ids:
                services.notifier.tell(approver_id, text + " Approve or deny it in its thread or in my Home tab.")
        services.notifier.refresh_roots(request.id, state_changed=False)
        with services.db.session() as session:
            services.audit.record(
                session,
                AuditEventType.REMINDER_SENT,
                request_id=request.id,
                kind="approvers",
                to=approver_ids,
                reminder_number=request.approval_reminders_sent,
            )

    def expire(self) -> int:
        services = self.services
        now = services.clock.now()
        with services.db.session() as session:
            claimed = claim_due(
                session, RequestStatus.PENDING, AccessRequest.expires_at, now, limit=self.batch, next_due=now
            )
        expired = 0
        after = format_duration(services.settings.request_expires_after)
        for request in claimed:
            if not change_state(
                services.db,
                services.audit,
                services.clock,
                request.id,
                RequestStatus.EXPIRED,
                AuditEventType.EXPIRED,
                only_from={RequestStatus.PENDING},
                details={"after": after},
                closed_at=now,
                approval_reminder_due_at=None,
                expires_at=None,
            ):
                continue
            expired += 1
            services.notifier.reply(
                request.id, f":zzz: Nobody decided within {after}; request {number(request.id)} expired."
            )
            services.notifier.refresh_roots(request.id)
            services.notifier.tell(
                request.requester_slack_id,
                f":zzz: Your request {number(request.id)} for *{escape(request.account_name)}* expired after "
                f"{after} without a decision. File it again with `/cf-access` if you still need access.",
            )
        return expired
