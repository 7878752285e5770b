"""Deciding requests: approve, deny, cancel, retry. Each is one conditional update; one wins.

Authorization is checked at click time against the account's current approvers; refusals are
audited. The loser of a race is told who decided and when.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bot.access.audit import AuditEventType, AuditLog
from bot.access.directory import Directory
from bot.access.invites import InviteOutbox
from bot.access.notifier import Notifier
from bot.access.state_change import change_state
from bot.cloudflare.errors import CloudflareError
from bot.core.clock import Clock
from bot.slack.formatting import escape, mention, number, role_list, slack_date
from bot.slack.gateway import SlackGateway
from storage.db import Database
from storage.models import AccessRequest
from storage.repository import get_request
from storage.states import RequestStatus

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Result:
    """What the person who acted is told (ephemeral); `ok` is False when nothing changed."""

    ok: bool
    message: str


def already_decided(request: AccessRequest) -> str:
    status = RequestStatus(request.status)
    who = mention(request.decided_by_slack_id) if request.decided_by_slack_id else None
    when = slack_date(request.decided_at) if request.decided_at else None
    if status in (RequestStatus.APPROVED, RequestStatus.INVITED, RequestStatus.ACCEPTED) and who:
        return f"Request {number(request.id)} was already approved by {who} {when}."
    if status == RequestStatus.DENIED and who:
        return f"Request {number(request.id)} was already denied by {who} {when}."
    if status == RequestStatus.FAILED and who:
        return f"Request {number(request.id)} was approved by {who} {when}, but its invite failed."
    if status == RequestStatus.CANCELLED:
        return f"Request {number(request.id)} was cancelled by the requester."
    return f"Request {number(request.id)} is already {status.value}."


class Decisions:
    def __init__(
        self,
        *,
        db: Database,
        directory: Directory,
        notifier: Notifier,
        outbox: InviteOutbox,
        audit: AuditLog,
        clock: Clock,
        slack: SlackGateway,
    ) -> None:
        self._db = db
        self._directory = directory
        self._notifier = notifier
        self._outbox = outbox
        self._audit = audit
        self._clock = clock
        self._slack = slack

    def _change(
        self,
        request_id: int,
        target: RequestStatus,
        event: AuditEventType,
        *,
        only_from: set[RequestStatus],
        actor_id: str,
        actor_email: str | None,
        details: dict[str, Any] | None = None,
        **values: Any,
    ) -> bool:
        return change_state(
            self._db,
            self._audit,
            self._clock,
            request_id,
            target,
            event,
            only_from=only_from,
            actor_slack_id=actor_id,
            actor_email=actor_email,
            details=details,
            **values,
        )

    def _load(self, request_id: int) -> AccessRequest | None:
        with self._db.session() as session:
            return get_request(session, request_id)

    def _email_of(self, slack_id: str) -> str | None:
        try:
            return self._slack.profile(slack_id).email
        except Exception:  # the audit row is still written, without the e-mail
            log.warning("could not read the profile of %s", slack_id)
            return None

    def refusal(self, request: AccessRequest, actor_id: str, action: str) -> str | None:
        """Why `actor_id` may not decide `request` (audited), or None when they may."""
        if actor_id == request.requester_slack_id:
            reason = (
                f"You cannot {action} your own request {number(request.id)}; a Super Administrator of "
                f"{escape(request.account_name)} decides it."
            )
        else:
            try:
                allowed = self._directory.is_approver(request.account_id, actor_id)
            except CloudflareError as error:
                return f"Could not check your approver rights with Cloudflare ({error}); nothing changed. Try again."
            if allowed:
                return None
            reason = (
                f"You are not allowed to {action} {number(request.id)}: only the Super Administrators of "
                f"{escape(request.account_name)} (or the configured fallback approvers) can."
            )
        with self._db.session() as session:
            self._audit.record(
                session,
                AuditEventType.DECISION_REFUSED,
                request_id=request.id,
                actor_slack_id=actor_id,
                actor_email=self._email_of(actor_id),
                action=action,
                why="own request" if actor_id == request.requester_slack_id else "not an approver",
            )
        return reason

    def approve(self, request_id: int, actor_id: str, granted_role_ids: Sequence[str]) -> Result:
        request = self._load(request_id)
        if request is None:
            return Result(False, f"Request {number(request_id)} does not exist.")
        if request.status != RequestStatus.PENDING.value:
            return Result(False, already_decided(request))
        refused = self.refusal(request, actor_id, "approve")
        if refused:
            return Result(False, refused)
        requestable = {role.id: role for role in self._directory.requestable_roles(request.account_id)}
        granted = [requestable[role_id] for role_id in dict.fromkeys(granted_role_ids) if role_id in requestable]
        if not granted or len(granted) != len(set(granted_role_ids)):
            return Result(False, "Pick at least one grantable role in the role picker, then Approve again.")
        now = self._clock.now()
        actor_email = self._email_of(actor_id)
        won = self._change(
            request_id,
            RequestStatus.APPROVED,
            AuditEventType.APPROVED,
            only_from={RequestStatus.PENDING},
            actor_id=actor_id,
            actor_email=actor_email,
            details=dict(
                roles_requested=request.requested_role_names,
                roles_granted=[role.name for role in granted],
                role_ids_granted=[role.id for role in granted],
            ),
            granted_role_ids=[role.id for role in granted],
            granted_role_names=[role.name for role in granted],
            decided_by_slack_id=actor_id,
            decided_by_email=actor_email,
            decided_at=now,
            invite_due_at=now,
            approval_reminder_due_at=None,
            expires_at=None,
        )
        if not won:
            latest = self._load(request_id)
            return Result(False, already_decided(latest) if latest else "This request no longer exists.")
        names = role_list(role.name for role in granted)
        changed = (
            ""
            if [r.id for r in granted] == request.requested_role_ids
            else f" (requested: {role_list(request.requested_role_names)})"
        )
        self._notifier.reply(
            request_id,
            f":white_check_mark: Approved by {mention(actor_id)}, granting {names}{changed}. Sending the Cloudflare invite…",
        )
        self._notifier.refresh_roots(request_id)
        self._notifier.tell(
            request.requester_slack_id,
            f":white_check_mark: Your request {number(request_id)} for *{escape(request.account_name)}* was approved "
            f"by {mention(actor_id)}, granting {names}{changed}. The Cloudflare invite is on its way.",
        )
        self._outbox.send(request_id)
        return Result(True, f"You approved {number(request_id)}.")

    def deny(self, request_id: int, actor_id: str, note: str | None) -> Result:
        request = self._load(request_id)
        if request is None:
            return Result(False, f"Request {number(request_id)} does not exist.")
        if request.status != RequestStatus.PENDING.value:
            return Result(False, already_decided(request))
        refused = self.refusal(request, actor_id, "deny")
        if refused:
            return Result(False, refused)
        note = (note or "").strip() or None
        now = self._clock.now()
        actor_email = self._email_of(actor_id)
        won = self._change(
            request_id,
            RequestStatus.DENIED,
            AuditEventType.DENIED,
            only_from={RequestStatus.PENDING},
            actor_id=actor_id,
            actor_email=actor_email,
            details=dict(
                roles_requested=request.requested_role_names,
                reason=note,
            ),
            decided_by_slack_id=actor_id,
            decided_by_email=actor_email,
            decided_at=now,
            decision_note=note,
            closed_at=now,
            approval_reminder_due_at=None,
            expires_at=None,
        )
        if not won:
            latest = self._load(request_id)
            return Result(False, already_decided(latest) if latest else "This request no longer exists.")
        because = f" Reason: {escape(note)}" if note else ""
        self._notifier.reply(request_id, f":no_entry: Denied by {mention(actor_id)}.{because}")
        self._notifier.refresh_roots(request_id)
        self._notifier.tell(
            request.requester_slack_id,
            f":no_entry: Your request {number(request_id)} for *{escape(request.account_name)}* was denied by "
            f"{mention(actor_id)}.{because}",
        )
        return Result(True, f"You denied {number(request_id)}.")

    def cancel(self, request_id: int, actor_id: str) -> Result:
        request = self._load(request_id)
        if request is None or request.requester_slack_id != actor_id:
            return Result(False, f"You have no request {number(request_id)}. See `/cf-access status`.")
        if request.status != RequestStatus.PENDING.value:
            return Result(
                False, f"Request {number(request_id)} is {request.status}; only pending requests can be cancelled."
            )
        now = self._clock.now()
        won = self._change(
            request_id,
            RequestStatus.CANCELLED,
            AuditEventType.CANCELLED,
            only_from={RequestStatus.PENDING},
            actor_id=actor_id,
            actor_email=request.requester_email,
            closed_at=now,
            decision_note="Withdrawn by the requester.",
            approval_reminder_due_at=None,
            expires_at=None,
        )
        if not won:
            latest = self._load(request_id)
            return Result(False, already_decided(latest) if latest else "This request no longer exists.")
        self._notifier.reply(request_id, f":wastebasket: {mention(actor_id)} withdrew this request.")
        self._notifier.refresh_roots(request_id)
        return Result(True, f"Request {number(request_id)} for {request.account_name} is cancelled.")

    def retry_invite(self, request_id: int, actor_id: str) -> Result:
        request = self._load(request_id)
        if request is None:
            return Result(False, f"Request {number(request_id)} does not exist.")
        if request.status != RequestStatus.FAILED.value or not request.granted_role_ids:
            return Result(
                False, f"Request {number(request_id)} is {request.status}; there is no failed invite to retry."
            )
        refused = self.refusal(request, actor_id, "retry the invite of")
        if refused:
            return Result(False, refused)
        now = self._clock.now()
        won = self._change(
            request_id,
            RequestStatus.APPROVED,
            AuditEventType.INVITE_RETRIED,
            only_from={RequestStatus.FAILED},
            actor_id=actor_id,
            actor_email=self._email_of(actor_id),
            invite_due_at=now,
            invite_error=None,
            closed_at=None,
            invite_lease_until=None,
        )
        if not won:
            return Result(False, f"The invite of {number(request_id)} is already being retried.")
        self._notifier.reply(request_id, f":repeat: {mention(actor_id)} is retrying the invite.")
        self._notifier.refresh_roots(request_id)
        self._outbox.send(request_id)
        return Result(True, f"Retrying the invite of {number(request_id)}.")
