"""The invite outbox: approved requests become Cloudflare members exactly once.

The approval is committed before any Cloudflare call. A worker leases the request, counts the
attempt durably, looks the e-mail up among the account's members, and only then POSTs. After an
ambiguous failure (5xx, timeout, dropped connection) the next attempt re-reads the member list, so
a member created by a lost response is adopted instead of invited twice.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from bot.access.audit import AuditEventType, AuditLog
from bot.access.directory import Directory
from bot.access.notifier import Notifier
from bot.cloudflare.client import CloudflareClient, backoff_delay
from bot.cloudflare.errors import CloudflareClientError, CloudflareError, CloudflareRateLimited
from bot.cloudflare.models import Member, Role
from bot.core.clock import Clock
from bot.core.config import Settings
from bot.slack.formatting import escape, mention, number, role_list
from bot.slack.messages import text_block
from storage.db import Database
from storage.models import AccessRequest
from storage.repository import claim, get_request, invites_due, lease_invite, transition
from storage.states import RequestStatus

log = logging.getLogger(__name__)
MAX_RETRY_AFTER = 120.0


@dataclass(frozen=True)
class InviteOutcome:
    status: RequestStatus
    event: AuditEventType
    member_id: str | None = None
    error: str | None = None


def _failed(error: str, member_id: str | None = None) -> InviteOutcome:
    return InviteOutcome(RequestStatus.FAILED, AuditEventType.INVITE_FAILED, member_id, error)


class InviteOutbox:
    def __init__(
        self,
        *,
        settings: Settings,
        db: Database,
        cloudflare: CloudflareClient,
        directory: Directory,
        notifier: Notifier,
        audit: AuditLog,
        clock: Clock,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._settings = settings
        self._db = db
        self._cloudflare = cloudflare
        self._directory = directory
        self._notifier = notifier
        self._audit = audit
        self._clock = clock
        self._sleep = sleep

    def send_due(self, *, limit: int = 50) -> int:
        """Send every approved invite that is due and unleased (start-up and each sweep)."""
        with self._db.session() as session:
            due = invites_due(session, self._clock.now(), limit=limit)
        for request_id in due:
            self.send(request_id)
        return len(due)

    def send(self, request_id: int) -> InviteOutcome | None:
        """Deliver one approved request's invite; None when another worker holds it."""
        now = self._clock.now()
        with self._db.session() as session:
            if not lease_invite(session, request_id, now=now, lease_until=now + self._settings.invite_lease):
                return None
            request = get_request(session, request_id)
        assert request is not None
        try:
            outcome = self._deliver(request)
        except Exception as error:  # never leave an approval without a terminal answer
            log.exception("invite for #%s failed unexpectedly", request_id)
            outcome = _failed(f"Unexpected error: {type(error).__name__}")
        self._finish(request, outcome)
        return outcome

    def _deliver(self, request: AccessRequest) -> InviteOutcome:
        granted = request.granted_role_ids or request.requested_role_ids
        attempts_before = request.invite_attempts
        last_error: CloudflareError | None = None
        for attempt in range(1, self._settings.invite_max_attempts + 1):
            with self._db.session() as session:
                claim(
                    session,
                    request.id,
                    invite_attempts=attempts_before + attempt,
                    invite_lease_until=self._clock.now() + self._settings.invite_lease,
                )
            # A previous attempt, here or in a process that died, may have created the member.
            may_exist = attempts_before + attempt > 1
            try:
                existing = self._directory.members(request.account_id, fresh=may_exist).find(request.requester_email)
                if existing is not None:
                    return self._existing_member(request, existing, ours=may_exist)
                member = self._cloudflare.create_member(
                    request.account_id, email=request.requester_email, role_ids=list(granted)
                )
                # Cloudflare's answer carries no roles: the index learns the granted ones, with their names.
                names = request.granted_role_names or request.requested_role_names or []
                roles = [Role(id=role_id, name=name) for role_id, name in zip(granted, names, strict=False)]
                self._directory.record_member(request.account_id, member.model_copy(update={"roles": roles}))
                return InviteOutcome(RequestStatus.INVITED, AuditEventType.INVITE_SENT, member.id)
            except CloudflareRateLimited as error:
                last_error = error
                self._wait(request, min(error.retry_after or backoff_delay(attempt), MAX_RETRY_AFTER))
            except CloudflareClientError as error:
                # Cloudflare documents no answer for a duplicate invite: look again before giving up.
                try:
                    existing = self._directory.members(request.account_id, fresh=True).find(request.requester_email)
                except CloudflareError:
                    existing = None
                if existing is not None:
                    return self._existing_member(request, existing, ours=may_exist)
                return _failed(f"Cloudflare refused the invite: {error}")
            except CloudflareError as error:
                last_error = error
                if not error.retryable:
                    return _failed(f"Cloudflare error: {error}")
                self._wait(request, backoff_delay(attempt, base=1.0))
        return _failed(
            f"Cloudflare did not accept the invite after {self._settings.invite_max_attempts} "
            f"attempts; last error: {last_error}"
        )

    def _wait(self, request: AccessRequest, seconds: float) -> None:
        """Back off, holding the lease for the whole wait so no other process takes the invite over."""
        with self._db.session() as session:
            claim(
                session,
                request.id,
                invite_lease_until=self._clock.now() + timedelta(seconds=seconds) + self._settings.invite_lease,
            )
        self._sleep(seconds)

    def _existing_member(self, request: AccessRequest, member: Member, *, ours: bool) -> InviteOutcome:
        granted = set(request.granted_role_ids or request.requested_role_ids)
        if member.accepted and member.role_ids >= granted:
            return InviteOutcome(RequestStatus.ACCEPTED, AuditEventType.ALREADY_MEMBER, member.id)
        if ours or (not member.accepted and member.role_ids >= granted):
            return InviteOutcome(
                RequestStatus.ACCEPTED if member.accepted else RequestStatus.INVITED,
                AuditEventType.INVITE_ADOPTED,
                member.id,
            )
        held = role_list(role.name for role in member.roles)
        return InviteOutcome(
            RequestStatus.FAILED,
            AuditEventType.ALREADY_MEMBER,
            member.id,
            f"{request.requester_email} is already a member of {request.account_name} ({member.status}, "
            f"roles: {held}). No second invite was sent; a Super Administrator can change roles in the "
            "Cloudflare dashboard.",
        )

    def _finish(self, request: AccessRequest, outcome: InviteOutcome) -> None:
        now = self._clock.now()
        values: dict[str, object] = {"invite_lease_until": None}
        if outcome.status == RequestStatus.INVITED:
            values.update(
                cloudflare_member_id=outcome.member_id,
                invited_at=now,
                invite_error=None,
                invite_check_due_at=now + self._settings.scheduler_interval,
                invite_reminder_due_at=now + self._settings.invite_reminder_after,
            )
        elif outcome.status == RequestStatus.ACCEPTED:
            values.update(cloudflare_member_id=outcome.member_id, invited_at=now, accepted_at=now, closed_at=now)
        else:
            values.update(invite_error=outcome.error, cloudflare_member_id=outcome.member_id, closed_at=now)
        with self._db.session() as session:
            if not transition(
                session, request.id, outcome.status, now=now, only_from={RequestStatus.APPROVED}, **values
            ):
                return  # a concurrent worker already finished it
            self._audit.record(
                session,
                outcome.event,
                request_id=request.id,
                cloudflare_member_id=outcome.member_id,
                roles_granted=request.granted_role_names,
                role_ids_granted=request.granted_role_ids,
                error=outcome.error,
            )
        self._announce(request, outcome)

    def _announce(self, request: AccessRequest, outcome: InviteOutcome) -> None:
        who = mention(request.requester_slack_id)
        roles = role_list(request.granted_role_names or [])
        account = escape(request.account_name)
        if outcome.event == AuditEventType.INVITE_ADOPTED:
            thread = (
                f":email: Cloudflare already holds a membership for {request.requester_email} in {account} "
                f"({outcome.status}); no second invite was sent."
            )
            dm = (
                f":email: Your request {number(request.id)} was approved; your membership of *{account}* is "
                f"{'active' if outcome.status == RequestStatus.ACCEPTED else 'waiting for you to accept the e-mail from Cloudflare'}."
            )
        elif outcome.status == RequestStatus.INVITED:
            thread = f":email: Invite sent to {request.requester_email} for {account} ({roles}). Waiting for {who} to accept."
            dm = (
                f":email: Your request {number(request.id)} was approved and Cloudflare has sent an invite to "
                f"{request.requester_email} for *{account}* ({roles}). Open that e-mail and accept it."
            )
        elif outcome.status == RequestStatus.ACCEPTED:
            thread = (
                f":information_source: {request.requester_email} is already a member of {account}; no invite needed."
            )
            dm = f":information_source: Request {number(request.id)}: you are already a member of *{account}*; no invite was needed."
        else:
            error = escape(outcome.error or "unknown error")
            thread = f":warning: The invite for {number(request.id)} failed: {error}"
            dm = (
                f":warning: Your request {number(request.id)} for *{account}* was approved, but the invite "
                f"could not be sent: {error} The approvers can retry it."
            )
        self._notifier.reply(request.id, thread, text_block(thread))
        self._notifier.refresh_roots(request.id)
        self._notifier.tell(request.requester_slack_id, dm)
