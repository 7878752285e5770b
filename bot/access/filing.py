"""Filing a request: every check a request must pass, then storing it and routing it to approvers.

Shared by the quick slash-command path and the modal, so both refuse the same things the same way.
"""

from __future__ import annotations

import logging
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta

from bot.access.access_model import AccessModel, Grantable
from bot.access.audit import AuditEventType, AuditLog
from bot.access.directory import Directory
from bot.access.matching import resolve
from bot.access.member_access import held_access, missing
from bot.access.notifier import Notifier, Root
from bot.access.scope import MAX_ZONES
from bot.access.terms import (
    DEFAULT,
    DurationRefused,
    Requested,
    duration_choices,
    effective_duration,
    from_seconds,
    to_seconds,
)
from bot.cloudflare.models import Account, Zone
from bot.core.clock import Clock
from bot.core.config import Settings
from bot.core.durations import parse_duration
from bot.slack.formatting import escape, mentions, number, scope_text, shown_roles
from bot.slack.gateway import SLACK_FAILED, SlackError, SlackGateway, SlackProfile, may_have_taken_effect
from bot.slack.messages import request_root, summary_text
from storage.db import Database
from storage.models import AccessRequest
from storage.repository import (
    DuplicateOpenRequest,
    NewRequest,
    add_message,
    create_request,
    open_request_for,
    status_of,
    transition,
)
from storage.states import RequestStatus

log = logging.getLogger(__name__)
REASON_MAX = 500


class Refusal(Exception):
    """A request that cannot be filed; `message` tells the user what is wrong and what to do."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


@dataclass(frozen=True)
class Filed:
    request: AccessRequest
    approver_ids: list[str]
    delivered_to: str


def _candidates(names: Sequence[str]) -> str:
    shown = ", ".join(f"`{escape(name)}`" for name in names[:15])
    more = f" and {len(names) - 15} more" if len(names) > 15 else ""
    return shown + more


def person_refusal(profile: SlackProfile, *, allow_guests: bool, workspace_id: Callable[[], str]) -> str | None:
    """Why this Slack user may not hold bot-granted access (None: they may). Checked at filing and at approval."""
    if profile.deleted:
        return "Your Slack account is deactivated, so it cannot ask for Cloudflare access."
    if profile.is_bot:
        return "Bots and apps cannot ask for Cloudflare access; a person must."
    if profile.is_stranger or (profile.team_id and profile.team_id != workspace_id()):
        return (
            "You are in this channel from another organisation's Slack (Slack Connect). Ask for access "
            "through your own organisation."
        )
    if profile.is_guest and not allow_guests:
        return f"Guests ({profile.standing}s) cannot ask for Cloudflare access in this workspace. Ask a Slack admin if you need it."
    if not profile.email_confirmed:
        return (
            "Your Slack e-mail address is not confirmed, and the Cloudflare invite goes to it. Confirm it "
            "(Slack sends a link), then ask again."
        )
    return None


def has_visible_text(text: str) -> bool:
    """Zero-width, format and control characters, spaces and lone combining marks show nothing."""
    return any(
        unicodedata.category(char)[0] not in "ZC" and unicodedata.category(char) not in ("Mn", "Me") for char in text
    )


def root_duration_choices(request: AccessRequest, settings: Settings) -> list[timedelta | None]:
    """The approver's duration select: the presets within MAX_ACCESS_DURATION, the requested one always among them."""
    return duration_choices(settings, from_seconds(request.requested_duration_s))


class Filing:
    def __init__(
        self,
        *,
        settings: Settings,
        db: Database,
        directory: Directory,
        slack: SlackGateway,
        audit: AuditLog,
        clock: Clock,
        notifier: Notifier,
    ) -> None:
        self._notifier = notifier
        self._settings = settings
        self._db = db
        self._directory = directory
        self._slack = slack
        self._audit = audit
        self._clock = clock

    # --- resolving what was typed ------------------------------------------------------------

    def resolve_account(self, query: str) -> Account:
        accounts = self._directory.accounts()
        found = resolve(query, accounts, key=lambda a: a.id, name=lambda a: a.name)
        if found.match is not None:
            return found.match
        names = [a.name for a in (found.candidates if found.ambiguous else accounts)]
        if found.ambiguous:
            raise Refusal(f"`{escape(query)}` matches several accounts: {_candidates(names)}. Type more of the name.")
        raise Refusal(f"No requestable account matches `{escape(query)}`. Accounts: {_candidates(names) or '(none)'}.")

    def resolve_roles(self, account: Account, query: str) -> list[Grantable]:
        """Roles, or permission groups in the policies model (by id, name or label)."""
        access = self._directory.access(account.id)
        kind = "permission group" if access.model is AccessModel.POLICIES else "role"
        roles = self._directory.requestable(account.id)
        chosen: list[Grantable] = []
        for part in [p.strip() for p in query.split(",") if p.strip()]:
            found = resolve(part, roles, key=lambda r: r.id, name=lambda r: r.name, alias=lambda r: r.label)
            if found.match is None:
                if found.ambiguous:
                    names = [r.name for r in found.candidates]
                    raise Refusal(
                        f"`{escape(part)}` matches several {kind}s of {escape(account.name)}: {_candidates(names)}."
                    )
                blocked = resolve(
                    part, list(access.grantables), key=lambda r: r.id, name=lambda r: r.name, alias=lambda r: r.label
                )
                if blocked.match is not None:
                    raise Refusal(
                        f"{escape(blocked.match.name)} cannot be requested through Slack. Requestable {kind}s: "
                        f"{_candidates([r.name for r in roles])}."
                    )
                match = self._from_other_model(account, part, kind, roles)
            else:
                match = found.match
            if match not in chosen:
                chosen.append(match)
        if not chosen:
            raise Refusal("Name at least one role, e.g. `Administrator` or `DNS,Billing`.", field="roles")
        return chosen

    def _from_other_model(self, account: Account, part: str, kind: str, roles: Sequence[Grantable]) -> Grantable:
        """Nothing matched. A legacy role id (or a group id) whose role has a same-named group here is
        taken as that group (Cloudflare asks integrations to remap stored role ids); a name that
        exists only in the other model is refused, saying so plainly."""
        other = resolve(
            part,
            self._directory.other_model(account.id),
            key=lambda r: r.id,
            name=lambda r: r.name,
            alias=lambda r: r.label,
        )
        listed = f"{kind.capitalize()}s: {_candidates([r.name for r in roles])}."
        if other.match is None:
            raise Refusal(f"No requestable {kind} of {escape(account.name)} matches `{escape(part)}`. {listed}")
        same = [role for role in roles if role.name.casefold() == other.match.name.casefold()]
        if len(same) == 1:
            return same[0]
        if kind == "role":
            raise Refusal(
                f"{escape(other.match.name)} is a permission group, and {escape(account.name)} is managed with "
                f"legacy roles here, which cannot grant it. Nothing was filed. {listed}"
            )
        raise Refusal(
            f"{escape(other.match.name)} is a legacy role with no permission group on {escape(account.name)}, "
            f"which uses permission policies. Nothing was filed. {listed}"
        )

    def resolve_zones(self, account: Account, names: Sequence[str]) -> list[Zone]:
        """Zones by exact name (one lookup each), else by a unique start of a name among the
        account's zones. Only the policies model can scope a grant to zones."""
        if not names:
            return []
        if self._directory.access(account.id).model is not AccessModel.POLICIES:
            raise Refusal(
                f"{escape(account.name)} is managed with legacy roles, which Cloudflare grants on the whole "
                "account only: zone-scoped access needs its permission policies. Ask without `on ZONE`, or ask a "
                "Super Administrator. Nothing was filed."
            )
        wanted = list(dict.fromkeys(name.strip().lower().rstrip(".") for name in names if name.strip()))
        if len(wanted) > MAX_ZONES:
            raise Refusal(
                f"{len(wanted)} zones is more than one grant takes ({MAX_ZONES}). Ask for fewer zones, or for "
                "the whole account. Nothing was filed.",
                field="zones",
            )
        zones: list[Zone] = []
        for name in wanted:
            zone = self._directory.find_zone(account.id, name)
            if zone is None:
                zone = self._zone_by_prefix(account, name)
            if zone not in zones:
                zones.append(zone)
        return zones

    def _zone_by_prefix(self, account: Account, name: str) -> Zone:
        known = self._directory.zones(account.id)
        found = resolve(name, known, key=lambda z: z.id, name=lambda z: z.name)
        if found.match is not None:
            return found.match
        if found.ambiguous:
            raise Refusal(
                f"`{escape(name)}` matches several zones of {escape(account.name)}: "
                f"{_candidates([z.name for z in found.candidates])}. Type the whole zone name. Nothing was filed.",
                field="zones",
            )
        raise Refusal(
            f"{escape(account.name)} has no zone `{escape(name)}`. Nothing was filed. Check the name with a Super "
            "Administrator, or ask for the whole account.",
            field="zones",
        )

    def zones_by_id(self, account: Account, zone_ids: Sequence[str]) -> list[Zone]:
        """The zones chosen in the form (ids), checked against the account's zones."""
        if not zone_ids:
            return []
        known = {zone.id: zone for zone in self._directory.zones(account.id)}
        gone = [zone_id for zone_id in zone_ids if zone_id not in known]
        if gone:
            raise Refusal(
                f"{len(gone)} of the chosen zones no longer belong to {escape(account.name)}; open the form again.",
                field="zones",
            )
        return [known[zone_id] for zone_id in dict.fromkeys(zone_ids)]

    def check_scope(self, account: Account, roles: Sequence[Grantable], zone_count: int) -> None:
        """A permission group is granted either on zones or on the whole account: never the wrong one
        (Cloudflare would refuse it with error 1006 at the invite). No Cloudflare call once warm."""
        zoned = zone_count > 0
        if zoned and self._directory.access(account.id).model is not AccessModel.POLICIES:
            raise Refusal(
                f"{escape(account.name)} is managed with legacy roles: access cannot be scoped to zones there.",
                field="zones",
            )
        if zone_count > MAX_ZONES:
            raise Refusal(f"Choose at most {MAX_ZONES} zones, or none for the whole account.", field="zones")
        misfits = [role for role in roles if not role.fits(zoned)]
        if not misfits:
            return
        fitting = [role.name for role in self._directory.requestable(account.id, zoned=zoned)]
        names = shown_roles(role.name for role in misfits)
        if zoned:
            raise Refusal(
                f"{names} cannot be scoped to zones (Cloudflare grants it on the whole account only). For zones "
                f"choose {_candidates(fitting) or 'a domain permission group'}, or ask without zones. Nothing was filed.",
                field="roles",
            )
        raise Refusal(
            f"{names} applies to zones only: name the zones (`on example.com`, or the Zones field), or choose an "
            f"account-wide group: {_candidates(fitting) or '(none)'}. Nothing was filed.",
            field="roles",
        )

    # --- checks that need no Cloudflare call (modal submission answers within Slack's 3 s) ------

    def requester(self, user_id: str) -> SlackProfile:
        """The requester's Slack profile, refused (with the reason) if they may not ask for access."""
        profile = self._slack.profile(user_id)
        self.check_person(profile)
        if not profile.email:
            raise Refusal(
                "Your Slack profile has no e-mail address, and the Cloudflare invite goes to it. "
                "Ask a Slack admin to add one, then try again."
            )
        return profile

    def check_person(self, profile: SlackProfile) -> None:
        """Only confirmed people of this workspace may ask: an invite goes to their Slack e-mail."""
        refused = person_refusal(
            profile, allow_guests=self._settings.allow_guests, workspace_id=self._slack.workspace_id
        )
        if refused:
            raise Refusal(refused)

    def check_fields(
        self,
        profile: SlackProfile,
        account: Account,
        roles: Sequence[Grantable],
        reason: str,
        zone_count: int = 0,
    ) -> str:
        reason = reason.strip()
        if not has_visible_text(reason):
            raise Refusal("Give a reason: approvers need to know why (1 to 500 characters).", field="reason")
        if len(reason) > REASON_MAX:
            raise Refusal(f"The reason is {len(reason)} characters; keep it to {REASON_MAX}.", field="reason")
        email = (profile.email or "").lower()
        allowed = self._settings.allowed_email_domains
        domain = email.rpartition("@")[2]
        if allowed and domain not in allowed:
            raise Refusal(
                f"Invites may only go to addresses at {escape(', '.join(allowed))}; your Slack e-mail is {escape(email)}. "
                "Ask a Slack admin to fix your profile e-mail."
            )
        requestable = {role.id for role in self._directory.requestable(account.id)}
        refused = [role.name for role in roles if role.id not in requestable]
        if refused:
            raise Refusal(f"{shown_roles(refused)} cannot be requested through Slack.", field="roles")
        if not roles:
            raise Refusal("Choose at least one role.", field="roles")
        self.check_scope(account, roles, zone_count)
        with self._db.session() as session:
            existing = open_request_for(session, profile.user_id, account.id)
        if existing is not None:
            raise Refusal(self._duplicate_message(existing), field="account")
        return reason

    @staticmethod
    def _duplicate_message(existing: AccessRequest | None) -> str:
        if existing is None:
            return "You already have an open request for this account."
        return (
            f"You already have an open request for {escape(existing.account_name)}: {number(existing.id)} "
            f"({existing.status}). Use `/cf-access status` to follow it, or `/cf-access cancel {existing.id}`."
        )

    # --- filing --------------------------------------------------------------------------------

    def resolve_duration(self, text: str | None) -> Requested:
        """A typed `for DURATION` (None: not given, so the default) checked against MAX_ACCESS_DURATION."""
        if text is None:
            return DEFAULT
        try:
            return effective_duration(parse_duration(text), self._settings)
        except DurationRefused as refused:
            raise Refusal(f"{refused} Nothing was filed.") from None
        except ValueError:
            raise Refusal(f"`{escape(text)}` is not a duration: write 8h, 3d or 2w.") from None

    def file(
        self,
        profile: SlackProfile,
        account: Account,
        roles: Sequence[Grantable],
        reason: str,
        duration: Requested = DEFAULT,
        *,
        extends: AccessRequest | None = None,
        zones: Sequence[Zone] = (),
    ) -> Filed:
        """Check everything, store the request, post it to the approvers; raise Refusal if anything fails.

        `duration` None means permanent (refused when MAX_ACCESS_DURATION is set); DEFAULT applies
        DEFAULT_ACCESS_DURATION. An extension (`extends`) asks for more time on a grant the requester holds.
        `zones` scope the grant (policies model); none means the whole account.
        """
        reason = self.check_fields(profile, account, roles, reason, len(zones))
        model = self._directory.access(account.id).model
        try:
            term = effective_duration(duration, self._settings)
        except DurationRefused as refused:
            raise Refusal(f"{refused} Nothing was filed.", field="duration") from None
        if extends is not None and term is None:
            raise Refusal("An extension needs a duration.", field="duration")
        email = (profile.email or "").lower()
        member = self._directory.members(account.id).find(email) if extends is None else None
        zone_ids = [zone.id for zone in zones]
        if member is not None and not missing(member, account.id, model, [r.id for r in roles], zone_ids=zone_ids):
            held = escape(held_access(member, account.id, model))
            state = "" if member.accepted else " (invite pending: accept the e-mail from Cloudflare)"
            raise Refusal(
                f"You are already a member of {escape(account.name)} with {held}{state}, which covers "
                f"{shown_roles(role.name for role in roles)} on the {scope_text(z.name for z in zones)}. "
                "Nothing was filed."
            )
        try:
            approvers = self._directory.approvers(account.id)
        except SLACK_FAILED:
            raise Refusal(
                f"Slack could not say who approves for {escape(account.name)} right now, so nobody could be "
                "asked. Nothing was filed; try again in a minute."
            ) from None
        if not approvers:
            raise Refusal(
                f"{escape(account.name)} has no Super Administrator that can be reached in Slack, and no fallback "
                "approver is configured, so nobody could decide. Nothing was filed; ask your Slack admin."
            )
        now = self._clock.now()
        new = NewRequest(
            requester_slack_id=profile.user_id,
            requester_email=email,
            account_id=account.id,
            account_name=account.name,
            requested_role_ids=[role.id for role in roles],
            requested_role_names=[role.name for role in roles],
            reason=reason,
            requester_standing=profile.standing,
            requested_duration_s=to_seconds(term),
            extends_request_id=extends.id if extends is not None else None,
            access_model=model.value,
            zone_ids=zone_ids or None,
            zone_names=[zone.name for zone in zones] or None,
        )
        try:
            with self._db.session() as session:
                request = create_request(
                    session,
                    new,
                    now=now,
                    reminder_due_at=now + self._settings.approval_reminder_after,
                    expires_at=now + self._settings.request_expires_after,
                )
                self._audit.record(
                    session,
                    AuditEventType.REQUESTED,
                    request_id=request.id,
                    actor_slack_id=profile.user_id,
                    actor_email=email,
                    account_id=account.id,
                    account_name=account.name,
                    roles_requested=new.requested_role_names,
                    role_ids_requested=new.requested_role_ids,
                    access_model=model.value,
                    zones=new.zone_names,
                    reason=reason,
                )
        except DuplicateOpenRequest:
            with self._db.session() as session:
                existing = open_request_for(session, profile.user_id, account.id)
            raise Refusal(self._duplicate_message(existing), field="account") from None
        approver_ids = [approver.slack_id for approver in approvers]
        delivered_to = self._route(request, approver_ids)
        return Filed(request, approver_ids, delivered_to)

    def _route(self, request: AccessRequest, approver_ids: list[str]) -> str:
        """Post the thread root once to APPROVAL_CHANNEL, or as a DM to each approver."""
        self._notifier.filing_started(request.id)
        try:
            return self._post_roots(request, approver_ids)
        finally:  # the replies a decision made meanwhile go out now, after the roots' late redraw
            self._notifier.filing_done(request.id)

    def _post_roots(self, request: AccessRequest, approver_ids: list[str]) -> str:
        grantable = self._directory.requestable(request.account_id, zoned=bool(request.zone_ids))
        blocks = request_root(
            request,
            now=self._clock.now(),
            approver_ids=approver_ids,
            grantable_roles=grantable,
            duration_choices=root_duration_choices(request, self._settings),
        )
        text = summary_text(request)
        posted: list[tuple[str, str, str | None]] = []
        errors: list[str] = []
        #: Posts Slack may have taken without answering: the approver may have the message.
        unconfirmed: list[str] = []
        if self._settings.approval_channel:
            try:
                message = self._slack.post(self._settings.approval_channel, f"{mentions(approver_ids)}: {text}", blocks)
                posted.append((message.channel_id, message.ts, None))
            except SLACK_FAILED as error:
                _sorted_out(error, errors, unconfirmed, "the channel")
        else:
            for approver_id in approver_ids:
                try:
                    message = self._slack.dm(approver_id, text, blocks)
                    posted.append((message.channel_id, message.ts, approver_id))
                except SLACK_FAILED as error:
                    _sorted_out(error, errors, unconfirmed, f"<@{approver_id}>", f"{approver_id}: ")
        now = self._clock.now()
        with self._db.session() as session:
            for channel_id, ts, recipient in posted:
                add_message(session, request.id, channel_id=channel_id, ts=ts, approver_slack_id=recipient, now=now)
            if not posted and not unconfirmed:
                transition(
                    session,
                    request.id,
                    RequestStatus.FAILED,
                    now=now,
                    closed_at=now,
                    invite_error="The request could not be delivered to any approver in Slack.",
                )
                self._audit.record(session, AuditEventType.DELIVERY_FAILED, request_id=request.id, errors=errors)
        if unconfirmed:
            log.warning("request #%s: Slack did not answer the post to %s", request.id, ", ".join(unconfirmed))
        if not posted and not unconfirmed:
            log.error("request #%s could not be posted to approvers: %s", request.id, errors)
            raise Refusal(
                f"Your request {number(request.id)} could not be delivered to the approvers in Slack "
                f"({escape('; '.join(errors))}). It was closed; tell your Slack admin."
            )
        self._notifier.remember_roots(request.id, [Root(channel_id, ts) for channel_id, ts, _ in posted])
        self._redraw_if_decided_meanwhile(request.id)
        self._notifier.changed(request)
        sent_to = f"<#{self._settings.approval_channel}>" if self._settings.approval_channel else mentions(approver_ids)
        # Unconfirmed posts leave the request pending (it expires if nobody decides): they may be there.
        if unconfirmed:
            missing = "the post" if self._settings.approval_channel else f"delivery to {', '.join(unconfirmed)}"
            return (
                f"{sent_to} (Slack did not confirm {missing}; if nobody answers, "
                f"`/cf-access cancel {request.id}` and ask again)"
            )
        return sent_to

    def _redraw_if_decided_meanwhile(self, request_id: int) -> None:
        """A root is clickable once posted, before the roots are stored: a decision made in between
        redrew no root, and the roots posted after it show the request as pending. Read after the
        roots are committed, the state is either seen here (and the roots redrawn) or was changed
        late enough for that decision to find the roots itself. Its thread reply waits for the roots
        when it is made in this process (`Notifier.filing_done`). A redraw that lands after a newer
        one draws again (`Notifier._draw`)."""
        try:
            with self._db.session() as session:
                status = status_of(session, request_id)
        except Exception:  # the request is filed and posted; only a rare repaint is missed
            log.warning("could not check whether #%s was decided while it was posted", request_id, exc_info=True)
            return
        if status is not None and status != RequestStatus.PENDING.value:
            log.info("request #%s was decided while its roots were posted: redrawing them", request_id)
            self._notifier.refresh_roots(request_id, state_changed=False)


def _sorted_out(error: Exception, errors: list[str], unconfirmed: list[str], shown: str, prefix: str = "") -> None:
    """A failed root post: refused (Slack's error), never sent (NEVER_SENT), or perhaps taken by
    Slack: no answer, or a 5xx, which Slack may send after posting (slack_sdk does not retry a post
    for that reason)."""
    if may_have_taken_effect(error):
        unconfirmed.append(shown)
    else:
        errors.append(f"{prefix}{error.code if isinstance(error, SlackError) else 'slack_unreachable'}")


def filed_message(filed: Filed) -> str:
    request = filed.request
    return (
        f"Request {number(request.id)} filed: {shown_roles(request.requested_role_names)} on "
        f"*{escape(request.account_name)}* ({scope_text(request.zone_names)}) for {escape(request.requester_email)}. Sent to {filed.delivered_to}; approvers: {mentions(filed.approver_ids)}. "
        f"You'll get a DM when it is decided. Follow it with `/cf-access status`."
    )
