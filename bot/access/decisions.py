"""Deciding requests: approve, deny, cancel, retry. Each is one conditional update; one wins.

Authorization is checked at click time against the account's current approvers; refusals are
audited. The loser of a race is told who decided and when.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from bot.access.access_model import model_of
from bot.access.audit import AuditEventType, AuditLog
from bot.access.directory import ApproversUnknown, Directory
from bot.access.filing import person_refusal
from bot.access.invites import InviteOutbox
from bot.access.notifier import Announcement, Notifier
from bot.access.state_change import change_state
from bot.access.terms import KEEP_REQUESTED, from_seconds
from bot.cloudflare.errors import CloudflareError
from bot.core.clock import Clock
from bot.core.config import Settings
from bot.core.durations import format_duration
from bot.core.ttl_cache import TtlCache
from bot.slack.formatting import escape, mention, number, scope_text, shown_roles, slack_date
from bot.slack.gateway import SlackError, SlackGateway
from storage.db import Database
from storage.models import AccessRequest
from storage.repository import claim, get_request
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
        settings: Settings,
    ) -> None:
        self._settings = settings
        self._db = db
        self._directory = directory
        self._notifier = notifier
        self._outbox = outbox
        self._audit = audit
        self._clock = clock
        self._slack = slack
        # Deciders' e-mails for audit rows: asked of Slack once per hour, not on every click.
        self._actor_emails: TtlCache[str, str | None] = TtlCache(clock, timedelta(hours=1))

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
            return self._actor_emails.get(slack_id, lambda: self._slack.profile(slack_id).email)
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
                return f"Could not check your approver rights with Cloudflare ({escape(str(error))}); nothing changed. Try again."
            except ApproversUnknown:
                return "Could not check your approver rights with Slack; nothing changed. Try again in a minute."
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

    def approve(
        self,
        request_id: int,
        actor_id: str,
        granted_role_ids: Sequence[str],
        granted_duration_s: int | None = KEEP_REQUESTED,
    ) -> Result:
        request = self._load(request_id)
        if request is None:
            return Result(False, f"Request {number(request_id)} does not exist.")
        if request.status != RequestStatus.PENDING.value:
            return Result(False, already_decided(request))
        refused = self.refusal(request, actor_id, "approve")
        if refused:
            return Result(False, refused)
        no_longer = self._no_longer_allowed(request)
        if no_longer:
            self._notifier.reply(
                request_id, f":no_entry_sign: {mention(actor_id)} could not approve: {no_longer} Nothing was sent."
            )
            return Result(False, f"Not approved: {no_longer}")
        model = self._directory.access(request.account_id).model
        if model is not model_of(request.access_model):
            note = (
                f"{escape(request.account_name)} now uses Cloudflare's {model.value} model, not the "
                f"{model_of(request.access_model).value} the request was filed in; the requester should ask again."
            )
            self._notifier.reply(request_id, f":no_entry_sign: {mention(actor_id)} could not approve: {note}")
            return Result(False, f"Not approved: {note}")
        zoned = bool(request.zone_ids)
        requestable = {role.id: role for role in self._directory.requestable(request.account_id, zoned=zoned)}
        granted = [requestable[role_id] for role_id in dict.fromkeys(granted_role_ids) if role_id in requestable]
        if not granted or len(granted) != len(set(granted_role_ids)):
            return Result(False, "Pick at least one grantable role in the role picker, then Approve again.")
        if granted_duration_s == KEEP_REQUESTED:
            granted_duration_s = request.requested_duration_s
        longest = self._settings.max_access_duration
        if longest is not None and (granted_duration_s is None or granted_duration_s > longest.total_seconds()):
            return Result(False, f"Pick a duration of at most {format_duration(longest)}, then Approve again.")
        now = self._clock.now()
        term = self._term_values(now, from_seconds(granted_duration_s))
        actor_email = self._email_of(actor_id)
        # An extension sends no invite: its approval moves the end of the grant it extends.
        held, lease = (None, {}) if request.extends_request_id else self._outbox.approval_lease(now)
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
                access_ends_at=term["access_ends_at"].isoformat() if "access_ends_at" in term else None,
                extends=request.extends_request_id,
                zones=request.zone_names,
            ),
            granted_role_ids=[role.id for role in granted],
            granted_role_names=[role.name for role in granted],
            decided_by_slack_id=actor_id,
            decided_by_email=actor_email,
            decided_at=now,
            invite_due_at=None if request.extends_request_id else now,
            approval_reminder_due_at=None,
            expires_at=None,
            granted_duration_s=granted_duration_s,
            **({} if request.extends_request_id else term),
            **lease,
        )
        if not won:
            latest = self._load(request_id)
            return Result(False, already_decided(latest) if latest else "This request no longer exists.")
        if request.extends_request_id:
            return self._extend(request, actor_id, from_seconds(granted_duration_s))
        changed = (
            ""
            if [r.id for r in granted] == request.requested_role_ids
            else f" (requested: {shown_roles(request.requested_role_names)})"
        )
        names = f"{shown_roles(role.name for role in granted)}{changed} on the {scope_text(request.zone_names)}"
        until = f" until {slack_date(term['access_ends_at'])}" if "access_ends_at" in term else ""
        lead = f":white_check_mark: Approved by {mention(actor_id)}, granting {names}{until}."
        dm_lead = (
            f":white_check_mark: Your request {number(request_id)} for *{escape(request.account_name)}* was "
            f"approved by {mention(actor_id)}, granting {names}."
        )
        # Held for the invite's outcome, which usually follows at once: people get one message, not two.
        self._notifier.hold(
            request_id,
            Announcement(
                thread=f"{lead} Sending the Cloudflare invite…",
                lead=lead,
                dm_user=request.requester_slack_id,
                dm=f"{dm_lead} The Cloudflare invite is on its way.",
                dm_lead=dm_lead,
            ),
        )
        self._outbox.send_soon(request_id, held=held)
        return Result(True, f"You approved {number(request_id)}.")

    def _term_values(self, now: datetime, duration: timedelta | None) -> dict[str, Any]:
        """The end of a grant approved now: when it ends, when its holder is warned, and the removal."""
        settings = self._settings
        values: dict[str, Any] = {"holder_check_due_at": now + settings.offboarding_check_interval}
        if duration is None:
            return values
        ends = now + duration
        warn = ends - settings.access_end_warning
        return values | {
            "access_ends_at": ends,
            "end_warning_due_at": warn if warn > now else None,
            "removal_due_at": ends,
            "removal_target": "ended",
        }

    def _extend(self, extension: AccessRequest, actor_id: str, duration: timedelta | None) -> Result:
        """Move the end of the grant `extension` extends; no Cloudflare write (the click-time read aside)."""
        original = self._load(extension.extends_request_id or 0)
        now = self._clock.now()
        grant_states = {RequestStatus.INVITED.value, RequestStatus.ACCEPTED.value}
        if original is None or original.status not in grant_states or duration is None:
            change_state(
                self._db,
                self._audit,
                self._clock,
                extension.id,
                RequestStatus.FAILED,
                AuditEventType.INVITE_FAILED,
                only_from={RequestStatus.APPROVED},
                details={"error": "the grant to extend is no longer held"},
                invite_error="The grant it extends is no longer held; file a new request.",
                closed_at=now,
            )
            self._notifier.refresh_roots(extension.id)
            return Result(False, f"{number(extension.id)} extends a grant that is no longer held; nothing changed.")
        base = max(original.access_ends_at or now, now)
        new_end = base + duration
        longest = self._settings.max_access_duration
        if longest is not None:
            new_end = min(new_end, now + longest)
        warn = new_end - self._settings.access_end_warning
        with self._db.session() as session:
            moved = claim(
                session,
                original.id,
                AccessRequest.status.in_(grant_states),
                AccessRequest.removal_target.is_(None) | (AccessRequest.removal_target == "ended"),
                access_ends_at=new_end,
                removal_due_at=new_end,
                removal_target="ended",
                end_warning_due_at=warn if warn > now else None,
                updated_at=now,
            )
            if moved:
                self._audit.record(
                    session,
                    AuditEventType.ACCESS_EXTENDED,
                    request_id=original.id,
                    actor_slack_id=actor_id,
                    extension_request_id=extension.id,
                    previous_end=original.access_ends_at.isoformat() if original.access_ends_at else None,
                    new_end=new_end.isoformat(),
                )
        if not moved:
            return Result(False, f"The grant of {number(original.id)} is being removed; it cannot be extended.")
        change_state(
            self._db,
            self._audit,
            self._clock,
            extension.id,
            RequestStatus.ACCEPTED,
            AuditEventType.ACCESS_EXTENDED,
            only_from={RequestStatus.APPROVED},
            actor_slack_id=actor_id,
            details={"extends": original.id, "new_end": new_end.isoformat()},
            access_ends_at=new_end,
            accepted_at=now,
            closed_at=now,
        )
        note = f":calendar: {mention(actor_id)} extended the access of {number(original.id)} to {slack_date(new_end)}."
        self._notifier.reply(original.id, note)
        self._notifier.refresh_roots(original.id)
        self._notifier.reply(extension.id, note)
        self._notifier.refresh_roots(extension.id)
        self._notifier.tell(
            extension.requester_slack_id,
            f":calendar: Your access to *{escape(original.account_name)}* ({number(original.id)}) now lasts until "
            f"{slack_date(new_end)} (extension {number(extension.id)}, approved by {mention(actor_id)}).",
        )
        return Result(True, f"You extended {number(original.id)} to {slack_date(new_end)}.")

    def _no_longer_allowed(self, request: AccessRequest) -> str | None:
        """What held at filing but not now: the account, the e-mail domain, the requester's standing."""
        if self._directory.account(request.account_id) is None:
            return f"{escape(request.account_name)} can no longer be requested through Slack."
        allowed = self._settings.allowed_email_domains
        if allowed and request.requester_email.rpartition("@")[2] not in allowed:
            return f"invites may now only go to addresses at {escape(', '.join(allowed))}, and {escape(request.requester_email)} is not."
        try:
            profile = self._slack.profile(request.requester_slack_id)
        except SlackError as error:
            return f"Slack could not tell whether {mention(request.requester_slack_id)} is still active ({error.code}); try again."
        refused = person_refusal(
            profile, allow_guests=self._settings.allow_guests, workspace_id=self._slack.workspace_id
        )
        if refused:
            return f"{mention(request.requester_slack_id)} may no longer hold access: {refused}"
        if (profile.email or "").lower() != request.requester_email:
            return f"{mention(request.requester_slack_id)}'s Slack e-mail changed since the request; they should ask again."
        return None

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
        held, lease = self._outbox.approval_lease(now)
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
            **lease,
        )
        if not won:
            return Result(False, f"The invite of {number(request_id)} is already being retried.")
        self._notifier.hold(request_id, Announcement(thread=f":repeat: {mention(actor_id)} is retrying the invite."))
        self._outbox.send_soon(request_id, held=held)
        return Result(True, f"Retrying the invite of {number(request_id)}.")
