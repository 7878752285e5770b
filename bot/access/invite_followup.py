"""Following each invite until it is accepted: one member-list read per account per sweep,
requester reminders, the "Resend invite" offer, and the resend itself."""

from __future__ import annotations

import logging
from collections import defaultdict
from datetime import datetime
from typing import Any

from bot.access.access_model import AccessModel, model_of
from bot.access.audit import AuditEventType
from bot.access.decisions import Result
from bot.access.services import Services
from bot.access.state_change import change_state
from bot.access.two_factor import nudge_two_factor
from bot.cloudflare.errors import CloudflareError, CloudflareNotFound
from bot.cloudflare.models import Member, PolicySpec
from bot.core.durations import format_duration
from bot.slack.formatting import addressed, escape, mention, number, shown_roles
from bot.slack.messages import resend_offer
from storage.models import AccessRequest
from storage.repository import ONE_MORE, claim, claim_due, get_request, transition
from storage.states import RequestStatus

log = logging.getLogger(__name__)


class InviteFollowUp:
    def __init__(self, services: Services, *, batch: int) -> None:
        self.services = services
        self.batch = batch

    def run(self) -> int:
        services = self.services
        now = services.clock.now()
        with services.db.session() as session:
            claimed = claim_due(
                session,
                RequestStatus.INVITED,
                AccessRequest.invite_check_due_at,
                now,
                limit=self.batch,
                next_due=now + services.settings.scheduler_interval,
            )
        by_account: dict[str, list[AccessRequest]] = defaultdict(list)
        for request in claimed:
            by_account[request.account_id].append(request)
        for account_id, requests in by_account.items():
            try:
                # One walk of the member list per account per sweep, not one GET per request.
                members = {m.id: m for m in services.directory.members(account_id, fresh=True).by_email.values()}
            except CloudflareError as error:
                log.warning("could not read members of %s; will check again next sweep: %s", account_id, error)
                continue
            for request in requests:
                self._follow(request, members.get(request.cloudflare_member_id or ""), now)
        return len(claimed)

    def _follow(self, request: AccessRequest, member: Member | None, now: datetime) -> None:
        if member is None:
            # Missing from one listing is not proof: ask for that member before closing anything.
            try:
                member = self.services.cloudflare.get_member(request.account_id, request.cloudflare_member_id or "")
            except CloudflareNotFound:
                self._invite_gone(request, now)
                return
            except CloudflareError as error:
                log.warning("could not confirm the invite of #%s; will check next sweep: %s", request.id, error)
                return
        if member.accepted:
            self._accepted(request, now)
        else:
            self._remind_invitee(request, now)
            self._offer_resend(request, now)

    def _accepted(self, request: AccessRequest, now: datetime) -> None:
        services = self.services
        if not change_state(
            services.db,
            services.audit,
            services.clock,
            request.id,
            RequestStatus.ACCEPTED,
            AuditEventType.INVITE_ACCEPTED,
            only_from={RequestStatus.INVITED},
            actor_slack_id=request.requester_slack_id,
            actor_email=request.requester_email,
            details={"cloudflare_member_id": request.cloudflare_member_id},
            accepted_at=now,
            closed_at=now,
            invite_check_due_at=None,
            invite_reminder_due_at=None,
        ):
            return
        roles = shown_roles(request.granted_role_names or [])
        services.notifier.reply(
            request.id,
            f":tada: {mention(request.requester_slack_id)} accepted the invite "
            f"and is now a member of {escape(request.account_name)} ({roles}).",
        )
        services.notifier.refresh_roots(request.id)
        services.notifier.tell(
            request.requester_slack_id,
            f":tada: You are now a member of "
            f"*{escape(request.account_name)}* ({roles}). Request {number(request.id)} is done.",
        )
        nudge_two_factor(services, request)

    def _invite_gone(self, request: AccessRequest, now: datetime) -> None:
        """Cloudflare confirms the pending member is gone: expired, or cancelled in the dashboard.

        Not a decision by a person: the request fails with Retry invite, so an approver can send it again.
        """
        services = self.services
        note = (
            "The invite is no longer in Cloudflare: it expired, or someone cancelled it in the dashboard. "
            "An approver can send it again with Retry invite."
        )
        if not change_state(
            services.db,
            services.audit,
            services.clock,
            request.id,
            RequestStatus.FAILED,
            AuditEventType.INVITE_REVOKED,
            only_from={RequestStatus.INVITED},
            # A removal that is due or under way deleted it (or will find it gone): it closes the grant.
            conditions=[
                AccessRequest.removal_target.is_(None)
                | (AccessRequest.removal_due_at > now + services.settings.invite_lease)
            ],
            details={"cloudflare_member_id": request.cloudflare_member_id, "confirmed_by": "GET member: 404"},
            closed_at=now,
            invite_error=note,
            invite_check_due_at=None,
            invite_reminder_due_at=None,
        ):
            return
        services.notifier.reply(request.id, f":hourglass: {note}")
        services.notifier.refresh_roots(request.id)
        services.notifier.tell(
            request.requester_slack_id,
            f":hourglass: Your Cloudflare invite for *{escape(request.account_name)}* "
            f"(request {number(request.id)}) is no longer valid: it expired or was cancelled. The approvers "
            "can send it again; you need not file a new request.",
        )

    def _remind_invitee(self, request: AccessRequest, now: datetime) -> None:
        services = self.services
        due = request.invite_reminder_due_at
        if due is None or due > now:
            return
        with services.db.session() as session:
            if not claim(
                session,
                request.id,
                AccessRequest.status == RequestStatus.INVITED.value,
                AccessRequest.invite_reminder_due_at == due,
                invite_reminder_due_at=now + services.settings.invite_reminder_after,
                invite_reminders_sent=ONE_MORE,
            ):
                return
            services.audit.record(
                session,
                AuditEventType.REMINDER_SENT,
                request_id=request.id,
                kind="invitee",
                to=[request.requester_slack_id],
                reminder_number=request.invite_reminders_sent + 1,
            )
        waited = format_duration(now - (request.invited_at or now))
        services.notifier.tell(
            request.requester_slack_id,
            f":envelope: Reminder: Cloudflare sent an invite to {escape(request.requester_email)} for "
            f"*{escape(request.account_name)}* {waited} ago. Find the e-mail from Cloudflare and accept it "
            "(check spam); until then you have no access.",
        )

    def _offer_resend(self, request: AccessRequest, now: datetime) -> None:
        services = self.services
        invited_at = request.invited_at or now
        if request.resend_offered_at is not None or now - invited_at < services.settings.invite_expires_after:
            return
        with services.db.session() as session:
            if not claim(
                session,
                request.id,
                AccessRequest.status == RequestStatus.INVITED.value,
                AccessRequest.resend_offered_at.is_(None),
                resend_offered_at=now,
            ):
                return
            services.audit.record(session, AuditEventType.REMINDER_SENT, request_id=request.id, kind="resend_offer")
        approvers = sorted(services.directory.approver_ids_to_tell(request.account_id))
        text = (
            f":hourglass: {addressed(approvers, ': ')}the invite for {number(request.id)} is still not accepted after "
            f"{format_duration(now - invited_at)}."
        )
        if not request.member_created_by_bot:
            # A pending invite made in the dashboard is not the bot's to cancel and send again.
            text += " It was created in the Cloudflare dashboard, not by this bot: resend it there if needed."
            services.notifier.reply(request.id, text)
            return
        services.notifier.reply(request.id, text, [*resend_offer(request)])

    # --- the Resend invite button --------------------------------------------------------------

    def resend(self, request_id: int, actor_id: str) -> Result:
        services = self.services
        with services.db.session() as session:
            request = get_request(session, request_id)
        if request is None or request.status != RequestStatus.INVITED.value or not request.cloudflare_member_id:
            state = request.status if request else "gone"
            return Result(False, f"Request {number(request_id)} is {state}; there is no pending invite to resend.")
        if not request.member_created_by_bot:
            return Result(
                False,
                f"The pending invite of {number(request_id)} was created in the Cloudflare dashboard, not by this "
                "bot, so the bot does not cancel it. Resend it from the dashboard.",
            )
        refused = services.decisions.refusal(request, actor_id, "resend the invite of")
        if refused:
            return Result(False, refused)
        now = services.clock.now()
        old_member_id = request.cloudflare_member_id
        with services.db.session() as session:
            # Claim: only the click that clears the offer resends.
            if not claim(
                session,
                request_id,
                AccessRequest.status == RequestStatus.INVITED.value,
                AccessRequest.cloudflare_member_id == old_member_id,
                AccessRequest.resend_offered_at.is_not(None),
                resend_offered_at=None,
            ):
                return Result(False, f"The invite of {number(request_id)} was already resent.")
        cloudflare = services.cloudflare
        try:
            current = cloudflare.get_member(request.account_id, old_member_id)
            if current.accepted:
                self._accepted(request, now)
                return Result(False, f"{escape(request.requester_email)} has just accepted; nothing to resend.")
            cloudflare.delete_member(request.account_id, old_member_id)
        except CloudflareNotFound:
            pass  # already gone: invite again
        except CloudflareError as error:
            with services.db.session() as session:
                claim(session, request_id, resend_offered_at=now)
            return Result(False, f"Cloudflare refused: {escape(str(error))}. Nothing changed; try again.")
        services.directory.forget_member(request.account_id, request.requester_email)
        try:
            # Re-read, not the index: someone may have invited them in the dashboard meanwhile.
            someone_elses = services.directory.members(request.account_id, fresh=True).find(request.requester_email)
        except CloudflareError:
            someone_elses = None
        if someone_elses is not None:
            note = (
                f"The old invite was cancelled, but {request.requester_email} already has a membership made "
                "outside the bot; no new invite was sent."
            )
            with services.db.session() as session:
                transition(
                    session,
                    request_id,
                    RequestStatus.FAILED,
                    now=now,
                    only_from={RequestStatus.INVITED},
                    invite_error=note,
                    cloudflare_member_id=None,
                    member_created_by_bot=False,
                    closed_at=now,
                )
            services.notifier.reply(request_id, f":warning: {escape(note)}")
            services.notifier.refresh_roots(request_id)
            return Result(False, escape(note))
        try:
            member = cloudflare.create_member(request.account_id, email=request.requester_email, **_access_of(request))
        except CloudflareError as error:
            with services.db.session() as session:
                transition(
                    session,
                    request_id,
                    RequestStatus.FAILED,
                    now=now,
                    only_from={RequestStatus.INVITED},
                    invite_error=f"The old invite was cancelled but the new one failed: {error}",
                    cloudflare_member_id=None,
                    closed_at=now,
                )
                services.audit.record(
                    session,
                    AuditEventType.INVITE_FAILED,
                    request_id=request_id,
                    actor_slack_id=actor_id,
                    error=str(error),
                )
            services.notifier.reply(request_id, f":warning: Resending failed: {escape(str(error))}")
            services.notifier.refresh_roots(request_id)
            return Result(False, f"The new invite failed: {escape(str(error))}")
        services.directory.record_member(request.account_id, member)
        with services.db.session() as session:
            claim(
                session,
                request_id,
                cloudflare_member_id=member.id,
                invited_at=now,
                invite_reminder_due_at=now + services.settings.invite_reminder_after,
                invite_check_due_at=now + services.settings.scheduler_interval,
                updated_at=now,
            )
            services.audit.record(
                session,
                AuditEventType.INVITE_RESENT,
                request_id=request_id,
                actor_slack_id=actor_id,
                old_cloudflare_member_id=old_member_id,
                cloudflare_member_id=member.id,
            )
        services.notifier.reply(
            request_id, f":email: {mention(actor_id)} resent the invite to {request.requester_email}."
        )
        services.notifier.tell(
            request.requester_slack_id,
            f":email: A new Cloudflare invite for "
            f"*{escape(request.account_name)}* was sent to {request.requester_email}; accept it "
            "from the e-mail.",
        )
        return Result(True, f"Resent the invite of {number(request_id)}.")


def _access_of(request: AccessRequest) -> dict[str, Any]:
    """The same access as the first invite: its roles, or its policy on the same resource group."""
    granted = list(request.granted_role_ids or [])
    if model_of(request.access_model) is AccessModel.POLICIES and request.resource_group_id:
        policy = PolicySpec(permission_group_ids=tuple(granted), resource_group_ids=(request.resource_group_id,))
        return {"policies": [policy]}
    return {"role_ids": granted}
