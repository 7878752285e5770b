"""The life of a grant after the invite: end warnings, the end itself, revocation and offboarding.

Every removal goes through one path: the request is marked for removal (`removal_due_at`, with
the state it will end in and why), and a worker claims it by a conditional update that also sets
an in-flight lease, so it runs once across replicas and restarts. The bot removes exactly what it
added: the member its own POST created (`DELETE .../members/{id}`, pending or accepted), or, for
access it added to a membership that existed before, a `PUT` of the member's current access less
exactly that (`access_added`); any other membership is left alone and the approvers are told. A
refusal by Cloudflare is retried with backoff and reported once in the thread: a grant is never
forgotten. A crash between the DELETE (or PUT) and the state change is harmless: the retry's
DELETE answers 404, and its PUT finds the grant gone, which both count as done.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from bot.access.access_model import AccessModel, model_of
from bot.access.audit import AuditEventType
from bot.access.decisions import Result
from bot.access.member_access import added_record, roles_would_lose, without_added
from bot.access.services import Services
from bot.access.state_change import change_state
from bot.cloudflare.errors import CloudflareError, CloudflareNotFound, CloudflareRateLimited
from bot.core.durations import format_duration
from bot.slack.formatting import addressed, escape, mention, number, scope_text, shown_roles, slack_date
from bot.slack.gateway import NO_ANSWER, SlackError
from bot.slack.messages import end_warning_blocks
from storage.models import AccessRequest
from storage.repository import claim, claim_due, get_request, grants_of, other_grants_on
from storage.states import RequestStatus

log = logging.getLogger(__name__)
GRANT_STATES = (RequestStatus.INVITED, RequestStatus.ACCEPTED)
_MAX_REMOVAL_BACKOFF = timedelta(hours=1)
#: When Slack could not answer an offboarding check (no answer, or an error other than "no such
#: user"), the holders not checked are asked again this soon rather than after a whole
#: OFFBOARDING_CHECK_INTERVAL.
_UNCHECKED_RECHECK = timedelta(minutes=5)


class RemovalKind(StrEnum):
    """Why a grant goes (stored in `removal_target`): each ends in a state and writes an audit event."""

    ENDED = "ended"
    REVOKED = "revoked"
    OFFBOARDED = "offboarded"

    @property
    def state(self) -> RequestStatus:
        return RequestStatus.ENDED if self is RemovalKind.ENDED else RequestStatus.REVOKED

    @property
    def event(self) -> AuditEventType:
        return {
            RemovalKind.ENDED: AuditEventType.ACCESS_ENDED,
            RemovalKind.REVOKED: AuditEventType.ACCESS_REVOKED,
            RemovalKind.OFFBOARDED: AuditEventType.OFFBOARDED,
        }[self]


class RemovalBlocked(Exception):
    """Removing the grant now would take more than the grant: retried, and the approvers are told."""


@dataclass(frozen=True)
class Removal:
    kind: RemovalKind
    actor_slack_id: str | None = None
    reason: str | None = None


class Grants:
    def __init__(self, services: Services, *, batch: int = 100) -> None:
        self.services = services
        self.batch = batch

    # --- warnings -------------------------------------------------------------------------------

    def warn_due(self) -> int:
        """DM each holder whose grant ends within ACCESS_END_WARNING, once, with Request extension."""
        services = self.services
        now = services.clock.now()
        with services.db.session() as session:
            claimed = claim_due(
                session, GRANT_STATES, AccessRequest.end_warning_due_at, now, limit=self.batch, next_due=None
            )
            for request in claimed:
                services.audit.record(
                    session,
                    AuditEventType.END_WARNING_SENT,
                    request_id=request.id,
                    access_ends_at=request.access_ends_at.isoformat() if request.access_ends_at else None,
                )
        for request in claimed:
            self._warn(request, now)
        return len(claimed)

    def _warn(self, request: AccessRequest, now: datetime) -> None:
        ends = request.access_ends_at or now
        text = (
            f":hourglass: Your access to *{escape(request.account_name)}* "
            f"({shown_roles(request.granted_role_names or [])}, request {number(request.id)}) ends "
            f"{slack_date(ends)}, in {format_duration(ends - now)}. If you still need it, request an extension."
        )
        self.services.notifier.tell(request.requester_slack_id, text, end_warning_blocks(request, text))

    # --- removal ------------------------------------------------------------------------------------

    def mark_for_removal(self, request_id: int, removal: Removal) -> bool:
        """Schedule the removal now (revoke, offboarding); False when the request holds no grant."""
        services = self.services
        now = services.clock.now()
        with services.db.session() as session:
            return claim(
                session,
                request_id,
                AccessRequest.status.in_([status.value for status in GRANT_STATES]),
                # An earlier revoke wins over a later one; a scheduled end may become a revoke.
                (AccessRequest.removal_target.is_(None)) | (AccessRequest.removal_target == RemovalKind.ENDED.value),
                removal_due_at=now,
                removal_target=removal.kind.value,
                removal_reason=removal.reason,
                removal_actor_slack_id=removal.actor_slack_id,
                end_warning_due_at=None,
            )

    def remove_due(self) -> int:
        """Run every removal that is due (ends reached, revocations, retries after a refusal)."""
        services = self.services
        now = services.clock.now()
        with services.db.session() as session:
            # The claim doubles as an in-flight lease: a crashed worker's removal is taken over after it.
            claimed = claim_due(
                session,
                GRANT_STATES,
                AccessRequest.removal_due_at,
                now,
                limit=self.batch,
                next_due=now + services.settings.invite_lease,
            )
        for request in claimed:
            self._remove(request, now)
        return len(claimed)

    def remove_now(self, request_id: int) -> Result:
        """Run one request's removal at once (a revoke click or the CLI), claimed like the sweep's."""
        services = self.services
        now = services.clock.now()
        with services.db.session() as session:
            request = get_request(session, request_id)
            if request is None or request.removal_due_at is None:
                return Result(False, f"Request {number(request_id)} has no removal waiting.")
            if not claim(
                session,
                request_id,
                AccessRequest.removal_due_at == request.removal_due_at,
                AccessRequest.status.in_([status.value for status in GRANT_STATES]),
                removal_due_at=now + services.settings.invite_lease,
            ):
                return Result(False, f"The removal of {number(request_id)} is already under way.")
        return self._remove(request, now)

    def _remove(self, request: AccessRequest, now: datetime) -> Result:
        services = self.services
        removal = Removal(
            RemovalKind(request.removal_target or RemovalKind.ENDED.value),
            request.removal_actor_slack_id,
            request.removal_reason,
        )
        removed_member = False
        removed_access = False
        added = request.access_added if request.member_added_to else None
        if request.member_created_by_bot and self._shared_membership(request):
            # Another live grant rides on the member this one created: take back only this one's part.
            added = added_record(
                model_of(request.access_model), request.granted_role_ids or [], request.resource_group_id
            )
        if (request.member_created_by_bot or added) and request.cloudflare_member_id:
            try:
                if request.member_created_by_bot and not self._shared_membership(request):
                    services.cloudflare.delete_member(request.account_id, request.cloudflare_member_id)
                    removed_member = True
                else:
                    assert added is not None
                    removed_access = self._take_back(request, added)
            except CloudflareNotFound:
                # Already gone: a crash after the DELETE, or removed in the dashboard.
                removed_member = request.member_created_by_bot
                removed_access = not request.member_created_by_bot
            except CloudflareRateLimited as error:
                # The shared pause (or a 429): not a refusal; try again when calls may go out.
                wait = timedelta(seconds=max(error.retry_after or 60.0, 1.0))
                with services.db.session() as session:
                    claim(session, request.id, removal_due_at=now + wait)
                return Result(
                    False, f"Cloudflare asked the bot to slow down; the removal runs in {format_duration(wait)}."
                )
            except (CloudflareError, RemovalBlocked) as error:
                return self._removal_refused(request, now, error)
            if removed_member:
                services.directory.forget_member(request.account_id, request.requester_email)
        if not change_state(
            services.db,
            services.audit,
            services.clock,
            request.id,
            removal.kind.state,
            removal.kind.event,
            only_from=set(GRANT_STATES),
            actor_slack_id=removal.actor_slack_id,
            details={
                "cloudflare_member_id": request.cloudflare_member_id,
                "member_removed": removed_member,
                "access_removed": added if removed_access else None,
                "reason": removal.reason,
                "attempts": request.removal_attempts + 1,
            },
            removal_due_at=None,
            end_warning_due_at=None,
            holder_check_due_at=None,
            invite_check_due_at=None,
            invite_reminder_due_at=None,
            closed_at=now,
            decision_note=removal.reason,
        ):
            return Result(False, f"Request {number(request.id)} was already closed.")
        self._announce(request, removal, removed_member, removed_access)
        return Result(True, f"Access granted by {number(request.id)} was removed.")

    def _shared_membership(self, request: AccessRequest) -> bool:
        with self.services.db.session() as session:
            return other_grants_on(session, request) > 0

    def _take_back(self, request: AccessRequest, added: dict[str, Any]) -> bool:
        """PUT the member's current access less exactly what the bot added (re-read first: someone
        may have changed it since). Never deletes the membership, which the bot did not create."""
        services = self.services
        assert request.cloudflare_member_id is not None
        member = services.cloudflare.get_member(request.account_id, request.cloudflare_member_id)
        if model_of(added.get("model")) is AccessModel.ROLES and roles_would_lose(member, request.account_id):
            raise RemovalBlocked(
                "the member now also holds zone-scoped or deny policies, which an update by legacy roles would drop"
            )
        update = without_added(member, added)
        if update is not None:  # None: they no longer hold any of it (removed in the dashboard)
            updated = services.cloudflare.update_member(
                request.account_id, member.id, role_ids=update.role_ids, policies=update.policies
            )
            services.directory.record_member(request.account_id, updated)
        return True

    def _removal_refused(
        self, request: AccessRequest, now: datetime, error: CloudflareError | RemovalBlocked
    ) -> Result:
        services = self.services
        attempts = request.removal_attempts + 1
        delay = min(timedelta(minutes=2 ** min(attempts, 10)), _MAX_REMOVAL_BACKOFF)
        with services.db.session() as session:
            claim(session, request.id, removal_due_at=now + delay, removal_attempts=attempts)
        log.warning("removing the access of #%s failed (attempt %s): %s", request.id, attempts, error)
        if attempts == 1:  # the approvers hear once; the retries go on until Cloudflare agrees
            approvers = sorted(services.directory.approver_ids_to_tell(request.account_id))
            services.notifier.reply(
                request.id,
                f":warning: {addressed(approvers, ': ')}Cloudflare refused to remove the access of {number(request.id)} "
                f"({escape(str(error))}). The bot tries again (next in {format_duration(delay)}) until it is removed.",
            )
        return Result(False, f"Cloudflare refused the removal ({escape(str(error))}); it will be retried.")

    def _announce(self, request: AccessRequest, removal: Removal, removed_member: bool, removed_access: bool) -> None:
        services = self.services
        account = escape(request.account_name)
        if removed_member:
            what = "the membership the bot created was removed from Cloudflare"
        elif removed_access:
            what = (
                f"the access the bot added ({shown_roles(request.granted_role_names or [])} on the "
                f"{scope_text(request.zone_names)}) was taken off the membership; the rest of it is unchanged"
            )
        else:
            what = (
                "the membership existed before the bot's grant, so the bot left it in place "
                "(remove it in the Cloudflare dashboard if it should go)"
            )
        if removal.kind is RemovalKind.ENDED:
            thread = f":checkered_flag: The access granted by {number(request.id)} reached its end: {what}."
            dm = f":checkered_flag: Your access to *{account}* (request {number(request.id)}) has ended."
        elif removal.kind is RemovalKind.OFFBOARDED:
            thread = f":wave: {mention(request.requester_slack_id)} was deactivated in Slack: {what}."
            dm = f":wave: Your access to *{account}* (request {number(request.id)}) was removed: your Slack account was deactivated."
        else:
            by = mention(removal.actor_slack_id) if removal.actor_slack_id else "an operator"
            because = f" Reason: {escape(removal.reason)}" if removal.reason else ""
            thread = f":no_entry_sign: Access revoked by {by}: {what}.{because}"
            dm = f":no_entry_sign: Your access to *{account}* (request {number(request.id)}) was revoked by {by}.{because}"
        services.notifier.reply(request.id, thread)
        services.notifier.refresh_roots(request.id)
        if removal.kind is not RemovalKind.OFFBOARDED:
            services.notifier.tell(request.requester_slack_id, dm)

    # --- revocation ------------------------------------------------------------------------------------

    def revoke(self, request_id: int, actor_slack_id: str | None, reason: str | None) -> Result:
        """Remove a grant early. An approver is confirmed like for Approve; None is an operator (the CLI)."""
        services = self.services
        with services.db.session() as session:
            request = get_request(session, request_id)
        if request is None:
            return Result(False, f"Request {number(request_id)} does not exist.")
        if request.status not in {status.value for status in GRANT_STATES}:
            return Result(False, f"Request {number(request_id)} is {request.status}; it holds no access to revoke.")
        if actor_slack_id is not None:
            refused = services.decisions.refusal(request, actor_slack_id, "revoke the access of")
            if refused:
                return Result(False, refused)
        reason = (reason or "").strip() or None
        if not self.mark_for_removal(request_id, Removal(RemovalKind.REVOKED, actor_slack_id, reason)):
            return Result(False, f"The access of {number(request_id)} is already being removed.")
        return self.remove_now(request_id)

    # --- offboarding ---------------------------------------------------------------------------------

    def offboard(self, slack_id: str, why: str) -> int:
        """Revoke every grant the bot made to `slack_id` and cancel their open requests."""
        services = self.services
        if not services.settings.offboard_deactivated:
            return 0
        now = services.clock.now()
        with services.db.session() as session:
            held = list(grants_of(session, slack_id))
        count = 0
        reason = f"Offboarded: {why}."
        for request in held:
            if request.status in {status.value for status in GRANT_STATES}:
                if self.mark_for_removal(request.id, Removal(RemovalKind.OFFBOARDED, None, reason)):
                    self.remove_now(request.id)
                    count += 1
            elif request.status == RequestStatus.PENDING.value and change_state(
                services.db,
                services.audit,
                services.clock,
                request.id,
                RequestStatus.CANCELLED,
                AuditEventType.OFFBOARDED,
                only_from={RequestStatus.PENDING},
                details={"reason": reason},
                closed_at=now,
                decision_note=f"Cancelled: {why}",
                approval_reminder_due_at=None,
                expires_at=None,
            ):
                services.notifier.reply(
                    request.id,
                    f":wave: {mention(slack_id)} was deactivated in Slack; request {number(request.id)} is cancelled.",
                )
                services.notifier.refresh_roots(request.id)
                count += 1
        return count

    def _check_again_soon(self, requests: list[AccessRequest], now: datetime, claimed_until: datetime) -> None:
        """Holders Slack could not answer for are asked again soon, not after a whole interval (a
        deactivated user would keep access that long); only rows still as this sweep claimed them."""
        with self.services.db.session() as session:
            for request in requests:
                claim(
                    session,
                    request.id,
                    AccessRequest.status.in_([state.value for state in GRANT_STATES]),
                    AccessRequest.holder_check_due_at == claimed_until,
                    holder_check_due_at=now + _UNCHECKED_RECHECK,
                )

    def recheck_holders(self) -> int:
        """Ask Slack about each holder of bot-granted access once per OFFBOARDING_CHECK_INTERVAL."""
        services = self.services
        if not services.settings.offboard_deactivated:
            return 0
        now = services.clock.now()
        next_check = now + services.settings.offboarding_check_interval
        holders: dict[str, list[AccessRequest]] = defaultdict(list)
        with services.db.session() as session:
            for request in claim_due(
                session, GRANT_STATES, AccessRequest.holder_check_due_at, now, limit=self.batch, next_due=next_check
            ):
                holders[request.requester_slack_id].append(request)
        for position, slack_id in enumerate(sorted(holders)):
            try:
                profile = services.slack.profile(slack_id)
            except NO_ANSWER as error:
                # Slack is not answering: asking the others now would only wait out their timeouts.
                waiting = [r for holder in sorted(holders)[position:] for r in holders[holder]]
                log.warning(
                    "Slack did not answer users.info (%s): %d holders are checked again in %s",
                    type(error).__name__,
                    len(waiting),
                    _UNCHECKED_RECHECK,
                )
                self._check_again_soon(waiting, now, next_check)
                break
            except SlackError as error:
                if error.code not in ("user_not_found", "users_not_found"):
                    log.warning(
                        "could not check %s in Slack: %s; again in %s", slack_id, error.code, _UNCHECKED_RECHECK
                    )
                    self._check_again_soon(holders[slack_id], now, next_check)
                    continue
                self.offboard(slack_id, "their Slack account no longer exists")
                continue
            if profile.deleted:
                self.offboard(slack_id, "their Slack account was deactivated")
        return len(holders)
