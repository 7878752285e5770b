"""The invite outbox: approved requests become Cloudflare members exactly once.

The approval is committed before any Cloudflare call. A worker leases the request, counts the
attempt durably, looks the e-mail up among the account's members, and only then POSTs. After an
ambiguous failure (5xx, timeout, dropped connection) the next attempt re-reads the member list, so
a member created by a lost response is adopted instead of invited twice.

Nothing here sleeps: a 429 (which pauses every Cloudflare call of the process) or a repeated
failure moves `invite_due_at` and gives the lease back; the invite poll and the sweep send it when
it is due. The holder renews its lease while it works, so a slow POST never lets another worker in.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from bot.access.access_model import AccessModel, model_of
from bot.access.audit import AuditEventType, AuditLog
from bot.access.directory import Directory
from bot.access.member_access import added_record, missing, roles_would_lose, with_added
from bot.access.notifier import Announcement, Notifier
from bot.access.scope import resource_group_for
from bot.cloudflare.client import CloudflareClient
from bot.cloudflare.errors import (
    CloudflareClientError,
    CloudflareError,
    CloudflareNotFound,
    CloudflareRateLimited,
    CloudflareUnreadable,
)
from bot.cloudflare.models import Member, PolicySpec, Role
from bot.cloudflare.pacing import LONGEST_PAUSE, CloudflarePaused
from bot.core.clock import Clock
from bot.core.config import Settings
from bot.core.timers import Deadline, Deadlines
from bot.slack.formatting import escape, mention, number, role_list, scope_label, scope_text, shown_roles
from storage.db import Database
from storage.models import AccessRequest
from storage.repository import (
    ONE_MORE,
    audit_for,
    claim,
    get_request,
    invites_due,
    lease_invite,
    release_invite,
    renew_invite_lease,
    transition,
)
from storage.states import RequestStatus

log = logging.getLogger(__name__)
#: The longest backoff between attempts after failures other than a 429, in seconds.
MAX_BACKOFF = 60.0


@dataclass(frozen=True)
class InviteOutcome:
    status: RequestStatus
    event: AuditEventType
    member_id: str | None = None
    error: str | None = None
    #: The member exists because the bot's own POST created it (answered, or lost and adopted).
    created_by_bot: bool = False
    #: What the bot's PUT added to a membership that existed before (`access_added`).
    added: dict[str, Any] | None = None


#: Cloudflare's code for a permission group granted on a resource group of the wrong scope.
SCOPE_MISMATCH = 1006


def _failed(error: str, member_id: str | None = None) -> InviteOutcome:
    return InviteOutcome(RequestStatus.FAILED, AuditEventType.INVITE_FAILED, member_id, error)


@dataclass(frozen=True)
class _Later:
    """Not finished: the invite is due again at `due_at` (the end of Cloudflare's pause, or a backoff)."""

    due_at: datetime
    why: str
    #: The attempt count to write back when the attempt counted was not made.
    attempts: int | None = None


class _Lease:
    """One worker's lease on one invite, renewed every `heartbeat` for as long as it works.

    A POST or a paged member listing may take longer than any fixed lease, so the holder renews it
    every `heartbeat` rather than guessing how long the work takes: the lease cannot lapse while
    its holder is alive, and a crashed holder's lease runs out within `hold`. Each write is fenced
    on the value the holder last wrote, so a holder that lost its lease never takes it back. `beats`
    (one timer thread for every lease of the process) says when a renewal is due, and each renewal
    runs on a thread of its own: most invites end long before the first one, so none is started for
    them (a thread per invite was started and joined on every click), and a renewal stuck in the
    database holds up no other lease.
    """

    def __init__(
        self,
        db: Database,
        clock: Clock,
        request: AccessRequest,
        *,
        held: datetime,
        hold: timedelta,
        heartbeat: timedelta,
        beats: Deadlines,
    ) -> None:
        self._db = db
        self._clock = clock
        self._request_id = request.id
        self._held = held
        self._hold = hold
        self._heartbeat = heartbeat.total_seconds()
        self._beats = beats
        #: invite_attempts as this holder last wrote it.
        self.attempts = request.invite_attempts
        self.lost = False
        self._lock = threading.Lock()
        self._done = False
        self._next: Deadline | None = None

    def __enter__(self) -> _Lease:
        self._next = self._beats.after(self._heartbeat, self._beat_on_its_own_thread)
        return self

    def __exit__(self, *_exc: object) -> None:
        """No renewal runs after this returns (one under way is waited for)."""
        with self._lock:
            self._done = True
            if self._next is not None:
                self._next.cancel()

    def _beat_on_its_own_thread(self) -> None:
        """On the timer's thread, which must not wait on the database."""
        threading.Thread(target=self._beat, name=f"invite-lease-{self._request_id}", daemon=True).start()

    def _beat(self) -> None:
        try:
            if not self._renew(beat=True):
                return
        except Exception:  # the database hiccupped: the lease still has `hold` to run; try again
            log.warning("could not renew the lease on the invite of #%s", self._request_id, exc_info=True)
        with self._lock:
            if not self._done:
                self._next = self._beats.after(self._heartbeat, self._beat_on_its_own_thread)

    def renew(self, *, attempts: int | None = None) -> bool:
        """Extend the lease (and record `attempts`); False once another worker holds the invite."""
        return self._renew(attempts=attempts)

    def _renew(self, *, attempts: int | None = None, beat: bool = False) -> bool:
        with self._lock:
            if self.lost or (beat and self._done):
                return False
            until = self._clock.now() + self._hold
            values = {} if attempts is None else {"invite_attempts": attempts}
            with self._db.session() as session:
                held = renew_invite_lease(session, self._request_id, held=self._held, lease_until=until, **values)
            if not held:
                self.lost = True
                log.warning("lost the lease on the invite of #%s to another worker", self._request_id)
                return False
            self._held = until
            if attempts is not None:
                self.attempts = attempts
            return True

    def release(self, *, due_at: datetime, attempts: int | None = None) -> bool:
        """Give the invite back, due again at `due_at` (after the heartbeat has stopped), with
        `attempts` as the attempt count when it changed."""
        values: dict[str, Any] = {"invite_due_at": due_at}
        if attempts is not None:
            values["invite_attempts"] = attempts
        with self._lock, self._db.session() as session:
            return not self.lost and release_invite(session, self._request_id, held=self._held, **values)


def _backoff(attempt: int) -> timedelta:
    """Exponential backoff with jitter, never zero: 1-2 s after a run's second attempt, doubling to a minute."""
    ceiling = min(MAX_BACKOFF, 2.0 ** (attempt - 1))
    return timedelta(seconds=random.uniform(ceiling / 2, ceiling))


class InviteOutbox:
    """Sends approved invites, one attempt per lease, and never sleeps: a 429 or a failure reschedules.

    `background` (the process's Cloudflare pool, apart from the Slack-facing one) runs the invites
    approvals hand over; without it `send_soon` sends at once on the caller's thread.
    """

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
        background: Callable[..., object] | None = None,
    ) -> None:
        self._settings = settings
        self._db = db
        self._cloudflare = cloudflare
        self._directory = directory
        self._notifier = notifier
        self._audit = audit
        self._clock = clock
        self._background = background
        #: Says when each lease this process holds is due for renewal (one timer thread).
        self._heartbeats = Deadlines("invite-lease-heartbeats")

    @property
    def lease_hold(self) -> timedelta:
        """How far ahead of now a live holder keeps its lease: a crashed holder's lease ends within this."""
        return self._settings.invite_lease * 2 / 3

    @property
    def heartbeat(self) -> timedelta:
        """How often a holder renews its lease, and how often due invites are polled for: a crashed
        holder's invite is taken over within `lease_hold + heartbeat` (5/6 of INVITE_LEASE)."""
        return self._settings.invite_lease / 6

    def approval_lease(self, now: datetime) -> tuple[datetime, dict[str, Any]]:
        """The lease an approval (or a retry) takes in its own write, for `send_soon` in this process:
        the invite poll (this process's or a replica's) never takes an invite that is only waiting its
        turn in the pool. The turn renews it and counts its attempt; a crash before the turn lets it
        run out, and the invite is taken over within INVITE_LEASE, as any unfinished one."""
        held = now + self.lease_hold
        return held, {"invite_lease_until": held}

    def send_soon(self, request_id: int, *, held: datetime | None = None) -> None:
        """Hand a just-approved invite to the Cloudflare pool, so the click's worker answers at once.
        `held`: the lease the approval took (`approval_lease`).

        The click's own messages are held by the notifier for the outcome (sent as one with it), or
        released as soon as the invite is rescheduled. Without a pool the invite is sent here and now.
        """
        if self._background is None:
            self.send(request_id, held=held)
            return
        try:
            self._background(self.send, request_id, pooled=True, held=held)
        except RuntimeError:  # shutting down: the approval is durable; the next start or a replica sends it
            log.info("not sending the invite of #%s now: shutting down", request_id)
            self._notifier.release(request_id)
            if held is not None:  # give the lease back, so that the next start or a replica need not wait
                try:
                    with self._db.session() as session:
                        release_invite(session, request_id, held=held)
                except Exception:  # it runs out within INVITE_LEASE anyway
                    log.warning("could not give back the lease on the invite of #%s", request_id, exc_info=True)

    def send_due(self, *, limit: int = 50) -> int:
        """Send every approved invite that is due and unleased (start-up, the invite poll, each sweep)."""
        if self._paused_until() is not None:
            return 0  # every call would be refused; they are sent when the pause ends
        with self._db.session() as session:
            due = invites_due(session, self._clock.now(), limit=limit)
        for request_id in due:
            self.send(request_id)
        return len(due)

    def send(self, request_id: int, *, pooled: bool = False, held: datetime | None = None) -> InviteOutcome | None:
        """One attempt at an approved invite that is due (two after an ambiguous failure). None when it
        is not finished: held by another worker, not due, or rescheduled after a 429 or a failure.
        `pooled`: on the Cloudflare pool, which hands the outcome's Slack messages to the Slack pool.
        `held`: the lease the approval already took (else one is taken here)."""
        now = self._clock.now()
        with self._db.session() as session:
            if held is None:
                held = now + self.lease_hold
                leased = lease_invite(session, request_id, now=now, lease_until=held)
            else:  # the approval's lease, renewed and counted as `lease_invite` would, unless it ran out
                approved, held = held, now + self.lease_hold
                leased = renew_invite_lease(
                    session,
                    request_id,
                    held=approved,
                    lease_until=held,
                    invite_attempts=ONE_MORE,
                )
            request = get_request(session, request_id) if leased else None
        if request is None:
            self._notifier.release(request_id)  # another worker has it: its outcome follows what is held
            return None
        self._notifier.started(request_id)
        lease = _Lease(
            self._db,
            self._clock,
            request,
            held=held,
            hold=self.lease_hold,
            heartbeat=self.heartbeat,
            beats=self._heartbeats,
        )
        with lease:
            try:
                result = self._deliver(request, lease)
            except Exception as error:  # never leave an approval without a terminal answer
                log.exception("invite for #%s failed unexpectedly", request_id)
                result = _failed(f"Unexpected error: {type(error).__name__}")
        if isinstance(result, _Later):
            if lease.release(due_at=result.due_at, attempts=result.attempts):
                log.info("invite for #%s due again at %s: %s", request_id, result.due_at.isoformat(), result.why)
            self._notifier.release(request_id)
            return None
        if result is None:
            self._notifier.release(request_id)
            return None  # another worker took it over before this attempt; it finishes it
        self._finish(request, result, attempts=lease.attempts, pooled=pooled)
        return result

    def _paused_until(self) -> datetime | None:
        pause = self._cloudflare.pause
        return pause.resumes_at() if pause is not None else None

    def _deliver(self, request: AccessRequest, lease: _Lease) -> InviteOutcome | _Later | None:
        """Attempt the invite; a 429 or a transient failure reschedules it instead of sleeping.

        Attempts are counted durably before any call and bounded by INVITE_MAX_ATTEMPTS per run (the
        approval, then each Retry invite), across reschedules. An ambiguous failure (5xx, timeout,
        dropped connection) is re-checked once at once, then backed off.
        """
        # The lease counted this attempt (lease_invite): `lease.attempts` includes it.
        paused = self._paused_until()
        if paused is not None:  # nothing sent: not an attempt
            return _Later(paused, "Cloudflare calls are paused", attempts=lease.attempts - 1)
        before_run = self._attempts_before_run(request)
        stored: AccessRequest | None = request  # read just after the lease was taken: fresh
        attempt = lease.attempts
        while True:
            try:
                # A previous attempt, here or in a process that died, may have created the member.
                return self._attempt(request, may_exist=attempt > 1, stored=stored)
            except CloudflarePaused as error:
                # Refused here, before the POST went out: it does not count as an attempt.
                return _Later(self._paused_until() or self._in(error.retry_after), str(error), attempts=attempt - 1)
            except CloudflareError as error:  # a 429, or a failure worth trying again
                last_error = error
            in_run = attempt - before_run
            if in_run >= self._settings.invite_max_attempts:
                return _failed(
                    f"Cloudflare did not accept the invite after {self._settings.invite_max_attempts} "
                    f"attempts; last error: {last_error}"
                )
            if isinstance(last_error, CloudflareRateLimited):
                return _Later(self._paused_until() or self._in(last_error.retry_after), str(last_error))
            if in_run > 1:
                return _Later(self._clock.now() + _backoff(in_run), str(last_error))
            # The first failure of a run: look again at once (the member list first), no sleep.
            stored = None  # the failed attempt may have written to the request: read it again
            attempt += 1
            if not lease.renew(attempts=attempt):
                return None

    def _in(self, retry_after: float | None) -> datetime:
        seconds = min(LONGEST_PAUSE, retry_after if retry_after is not None else MAX_BACKOFF)
        return self._clock.now() + timedelta(seconds=seconds)

    def _attempts_before_run(self, request: AccessRequest) -> int:
        """invite_attempts when this run began: what the last failed run had counted (its audit row).
        `request` was read after the lease counted the attempt under way."""
        if request.invite_attempts <= 1:
            return 0
        with self._db.session() as session:
            events = audit_for(session, request.id)
        for event in reversed(events):
            counted = (event.details or {}).get("invite_attempts")
            if isinstance(counted, int):
                return counted
        return 0

    def _attempt(self, request: AccessRequest, *, may_exist: bool, stored: AccessRequest | None) -> InviteOutcome:
        """Look the e-mail up, then POST (or PUT the missing access onto an existing membership).
        Raises CloudflareError only when trying again later may succeed."""
        granted = list(request.granted_role_ids or request.requested_role_ids)
        model = model_of(request.access_model)
        # Only after a POST of ours went out with no clear answer (in any run, any process: a 5xx, a
        # timeout, a crash) can a member found be the bot's own. It is recorded before each POST and
        # put back when Cloudflare clearly refuses (a refused POST created nothing).
        stored = stored or self._stored(request.id)
        posted_at = stored.invite_posted_at if stored is not None else None
        try:
            existing = self._directory.members(request.account_id, fresh=may_exist).find(request.requester_email)
            if existing is not None:
                return self._existing_member(request, existing, ours=posted_at is not None)
            policies, found = self._policies(request, granted, model, stored)
            with self._db.session() as session:  # a group just found is kept in the same write
                claim(session, request.id, invite_posted_at=self._clock.now(), **found)
            member = self._cloudflare.create_member(
                request.account_id,
                email=request.requester_email,
                role_ids=None if policies is not None else granted,
                policies=policies,
            )
            # Cloudflare's answer carries no roles: the index learns the granted ones, with their names.
            names = request.granted_role_names or request.requested_role_names or []
            roles = [Role(id=role_id, name=name) for role_id, name in zip(granted, names, strict=False)]
            if model is AccessModel.ROLES:
                member = member.model_copy(update={"roles": roles})
            self._directory.record_member(request.account_id, member)
            return InviteOutcome(RequestStatus.INVITED, AuditEventType.INVITE_SENT, member.id, created_by_bot=True)
        except CloudflareRateLimited:
            raise
        except CloudflareClientError as error:
            with self._db.session() as session:
                claim(session, request.id, invite_posted_at=posted_at)
            # Cloudflare documents no answer for a duplicate invite: look again before giving up.
            try:
                existing = self._directory.members(request.account_id, fresh=True).find(request.requester_email)
            except CloudflareError:
                existing = None
            if existing is not None:
                return self._existing_member(request, existing, ours=posted_at is not None)
            return _failed(self._refused(request, error, "the invite"))
        except CloudflareError as error:
            if not error.retryable:
                return _failed(f"Cloudflare error: {error}")
            raise

    def _policies(
        self, request: AccessRequest, granted: list[str], model: AccessModel, stored: AccessRequest | None
    ) -> tuple[list[PolicySpec] | None, dict[str, Any]]:
        """The new member's one `allow` policy (policies model), on the request's resource group,
        and the group's id to keep on the request when it was found just now (the caller writes it)."""
        if model is not AccessModel.POLICIES:
            return None, {}
        group, found = self._find_resource_group(request, stored)
        policies = [PolicySpec(permission_group_ids=tuple(granted), resource_group_ids=(group,))]
        return policies, ({"resource_group_id": group} if found else {})

    def _resource_group(self, request: AccessRequest, stored: AccessRequest | None = None) -> str:
        """Found (or, for zones, created) once, then kept on the request for retries and the removal."""
        group, found = self._find_resource_group(request, stored)
        if found:
            with self._db.session() as session:
                claim(session, request.id, resource_group_id=group)
        return group

    def _find_resource_group(self, request: AccessRequest, stored: AccessRequest | None) -> tuple[str, bool]:
        """The request's resource group, and whether it was found (or created) just now, not kept.
        `stored`: the request as just read, when the caller has it (else it is read here)."""
        stored = stored or self._stored(request.id)
        if stored is not None and stored.resource_group_id:
            return stored.resource_group_id, False
        group = resource_group_for(
            self._cloudflare, self._directory, request.account_id, request.zone_ids or [], request.zone_names or []
        )
        return group.id, True

    def _refused(self, request: AccessRequest, error: CloudflareError, what: str) -> str:
        if error.code == SCOPE_MISMATCH:
            return (
                f"Cloudflare refused {role_list(request.granted_role_names or [])} on the "
                f"{scope_label(request.zone_names)}: that permission group cannot be granted on that scope "
                f"(error 1006: {error.message}). Nothing was changed; file a request with a group that fits "
                "the scope (`/cf-access roles ACCOUNT` says which fit zones)."
            )
        return f"Cloudflare refused {what}: {error}"

    def _stored(self, request_id: int) -> AccessRequest | None:
        with self._db.session() as session:
            return get_request(session, request_id)

    def _existing_member(self, request: AccessRequest, member: Member, *, ours: bool) -> InviteOutcome:
        """A membership found for the e-mail. It is the bot's own only if a POST of ours went out and it
        holds what that POST granted; anything else is never recorded as granted by the bot. A
        membership that lacks part of the grant gets it added (PUT), nothing else changed."""
        model = model_of(request.access_model)
        granted = list(request.granted_role_ids or request.requested_role_ids)
        stored = self._stored(request.id)
        resource_group_id = stored.resource_group_id if stored is not None else None
        lacking = missing(
            member,
            request.account_id,
            model,
            granted,
            zone_ids=request.zone_ids or [],
            resource_group_id=resource_group_id,
        )
        if lacking:
            return self._add_missing(request, member, model, granted)
        added = stored.access_added if stored is not None else None
        if added and added.get("member_id") == member.id:
            # A PUT of ours went out and its answer was lost: the access it added is the bot's grant.
            status = RequestStatus.ACCEPTED if member.accepted else RequestStatus.INVITED
            return InviteOutcome(status, AuditEventType.ACCESS_ADDED, member.id, added=added)
        if ours:
            return InviteOutcome(
                RequestStatus.ACCEPTED if member.accepted else RequestStatus.INVITED,
                AuditEventType.INVITE_ADOPTED,
                member.id,
                created_by_bot=True,
            )
        if member.accepted:
            return InviteOutcome(RequestStatus.ACCEPTED, AuditEventType.ALREADY_MEMBER, member.id)
        # A pending invite made in the dashboard: followed, never deleted or re-sent.
        return InviteOutcome(RequestStatus.INVITED, AuditEventType.INVITE_ADOPTED, member.id)

    def _add_missing(
        self, request: AccessRequest, listed: Member, model: AccessModel, granted: list[str]
    ) -> InviteOutcome:
        """PUT everything the member holds plus the missing part of the grant, recording exactly what
        is added before the PUT goes out (so that a lost answer is recognised as the bot's own)."""
        account_id = request.account_id
        try:
            # Re-read: a PUT replaces the member's whole access, so it must start from what holds now.
            member = self._cloudflare.get_member(account_id, listed.id)
        except CloudflareNotFound:
            self._directory.forget_member(account_id, request.requester_email)
            raise CloudflareUnreadable(f"the membership of {request.requester_email} vanished; looking again") from None
        except CloudflareRateLimited:
            raise
        except CloudflareClientError as error:
            return _failed(f"Cloudflare refused to read the existing membership: {error}", listed.id)
        if model is AccessModel.ROLES and roles_would_lose(member, account_id):
            return _failed(
                f"{request.requester_email} is already a member of {request.account_name} and holds zone-scoped "
                "or deny policies, which an update by legacy roles would drop. Nothing was changed; a Super "
                "Administrator can add the access in the Cloudflare dashboard.",
                member.id,
            )
        resource_group_id = self._resource_group(request) if model is AccessModel.POLICIES else None
        lacking = missing(
            member, account_id, model, granted, zone_ids=request.zone_ids or [], resource_group_id=resource_group_id
        )
        if not lacking:
            return self._existing_member(request, member, ours=False)
        record = {**added_record(model, lacking, resource_group_id), "member_id": member.id}
        with self._db.session() as session:
            claim(session, request.id, access_added=record)
        update = with_added(member, model, lacking, resource_group_id)
        try:
            updated = self._cloudflare.update_member(
                account_id, member.id, role_ids=update.role_ids, policies=update.policies
            )
        except CloudflareRateLimited:
            raise
        except CloudflareClientError as error:
            with self._db.session() as session:
                claim(session, request.id, access_added=None)  # a refused PUT changed nothing
            return _failed(self._refused(request, error, "to add the access"), member.id)
        except CloudflareError:
            self._directory.forget_members(account_id)
            raise
        self._directory.record_member(account_id, updated)
        status = RequestStatus.ACCEPTED if member.accepted else RequestStatus.INVITED
        return InviteOutcome(status, AuditEventType.ACCESS_ADDED, member.id, added=record)

    def _finish(
        self,
        request: AccessRequest,
        outcome: InviteOutcome,
        *,
        attempts: int | None = None,
        pooled: bool = False,
    ) -> None:
        now = self._clock.now()
        values: dict[str, Any] = {"invite_lease_until": None}
        if outcome.created_by_bot:
            values["member_created_by_bot"] = True
        if outcome.added is not None:
            values["member_added_to"] = True
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
            # A failed run records its attempt count: a Retry invite starts a new run from there.
            counted: dict[str, Any] = (
                {"invite_attempts": attempts} if outcome.status == RequestStatus.FAILED and attempts else {}
            )
            if outcome.added is not None:
                counted["access_added"] = outcome.added
            self._audit.record(
                session,
                outcome.event,
                request_id=request.id,
                cloudflare_member_id=outcome.member_id,
                roles_granted=request.granted_role_names,
                role_ids_granted=request.granted_role_ids,
                zones=request.zone_names,
                error=outcome.error,
                **counted,
            )
        # Pooled: this (Cloudflare) pool's thread goes on to the next invite, not waiting on Slack.
        self._notifier.announce(request.id, self._announcement(request, outcome), pooled=pooled)

    def _announcement(self, request: AccessRequest, outcome: InviteOutcome) -> Announcement:
        """The outcome in the thread and in the requester's DM (`dm_follow`: after the approval's line)."""
        who = mention(request.requester_slack_id)
        roles = shown_roles(request.granted_role_names or [])
        account = escape(request.account_name)
        email = escape(request.requester_email)
        request_no = number(request.id)
        if outcome.event == AuditEventType.ACCESS_ADDED:
            scope = scope_text(request.zone_names)
            thread = (
                f":heavy_plus_sign: {email} was already a member of {account}: the bot added {roles} on the "
                f"{scope} to that membership and changed nothing else."
            )
            where = "your membership" if outcome.status == RequestStatus.ACCEPTED else "your pending invite"
            dm = f":heavy_plus_sign: Your request {request_no} was approved: {roles} on the {scope} was added to {where} of *{account}*."
            follow = f":heavy_plus_sign: {roles} on the {scope} was added to {where} of *{account}*."
        elif outcome.event == AuditEventType.INVITE_ADOPTED:
            thread = (
                f":email: Cloudflare already holds a membership for {email} in {account} "
                f"({outcome.status}); no second invite was sent."
            )
            state = (
                "active"
                if outcome.status == RequestStatus.ACCEPTED
                else "waiting for you to accept the e-mail from Cloudflare"
            )
            dm = f":email: Your request {request_no} was approved; your membership of *{account}* is {state}."
            follow = f":email: Your membership of *{account}* is {state}."
        elif outcome.status == RequestStatus.INVITED:
            thread = f":email: Invite sent to {email} for {account} ({roles}). Waiting for {who} to accept."
            sent = (
                f"Cloudflare has sent an invite to {email} for *{account}* ({roles}). Open that e-mail and accept it."
            )
            dm = f":email: Your request {request_no} was approved and {sent}"
            follow = f":email: {sent}"
        elif outcome.status == RequestStatus.ACCEPTED:
            thread = f":information_source: {email} is already a member of {account}; no invite needed."
            dm = f":information_source: Request {request_no}: you are already a member of *{account}*; no invite was needed."
            follow = f":information_source: You are already a member of *{account}*; no invite was needed."
        else:
            error = escape(outcome.error or "unknown error")
            thread = f":warning: The invite for {request_no} failed: {error}"
            dm = (
                f":warning: Your request {request_no} for *{account}* was approved, but the invite "
                f"could not be sent: {error} The approvers can retry it."
            )
            follow = f":warning: But the invite could not be sent: {error} The approvers can retry it."
        return Announcement(thread=thread, dm_user=request.requester_slack_id, dm=dm, dm_follow=follow)
