"""The access review (SPEC §13): every member of every requestable account, which of the bot's
requests granted each piece of their access, how they stand in Slack, whether they have 2FA, and
the findings a Super Administrator acts on.

Cost per account: one walk of the member list (pages of 50: a 5,000-member account is 100 GETs)
and its role list (cached by the directory); per run, one read of the requests table and one Slack
look-up per distinct e-mail (`bot.slack.people`). Cloudflare keeps no invite date, so a pending
invite is stale only when the bot sent it and knows its age; one made elsewhere is listed as
"pending (age unknown)" and never counted as stale.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from bot.access.directory import holds_super_admin
from bot.access.services import Services
from bot.cloudflare.models import Account, Member, Policy
from bot.core.durations import format_duration
from bot.slack.people import DEACTIVATED, NOT_FOUND, SlackPeople, SlackPerson
from storage.repository import iter_requests
from storage.states import RequestStatus

OUTSIDE = "outside"
# Requests whose member is the bot's own grant (sent, or accepted).
GRANTING = frozenset({RequestStatus.INVITED.value, RequestStatus.ACCEPTED.value})
# Accounts this large get progress lines; Slack progress every so many look-ups.
PROGRESS_FROM = 200
PROGRESS_EVERY = 250


@dataclass(frozen=True)
class Grant:
    """One of the bot's requests that created a member (its own POST, answered or adopted), or added
    access to an existing one (its PUT)."""

    request_id: int
    member_id: str
    piece_ids: frozenset[str]
    invited_at: datetime | None
    access_ends_at: datetime | None


@dataclass(frozen=True)
class ReportRow:
    account_id: str
    account: str
    member_id: str
    email: str
    status: str
    access: tuple[str, ...]
    #: "#N" for each request that granted a piece of the access, and "outside" for any piece none did.
    granted_by: tuple[str, ...]
    access_ends_at: datetime | None
    slack_status: str
    #: None while the invite is pending: the user may not exist yet.
    two_factor: bool | None
    super_admin: bool = False
    #: When the bot sent the invite (pending invites of its own only).
    invited_at: datetime | None = None

    @property
    def outside_only(self) -> bool:
        return self.granted_by == (OUTSIDE,)


@dataclass(frozen=True)
class Finding:
    key: str
    title: str
    entries: tuple[str, ...]

    @property
    def count(self) -> int:
        return len(self.entries)


@dataclass(frozen=True)
class AccountReview:
    account_id: str
    account_name: str
    rows: tuple[ReportRow, ...]
    findings: tuple[Finding, ...]
    super_admins: tuple[str, ...]
    enforces_two_factor: bool
    #: Slack ids of who approves for this account as the review saw it (they see its counts on Home).
    approvers: tuple[str, ...] = ()

    @property
    def member_count(self) -> int:
        return len(self.rows)


# --- pure parts: rows and findings ------------------------------------------------------------


def _scope(policy: Policy, account_id: str) -> str:
    scopes: list[str] = []
    for group in policy.resource_groups:
        if group.is_account_wide(account_id):
            scopes.append("account")
        else:
            zones = sorted(group.zone_ids)
            scopes.append(group.name or ("zones " + ", ".join(zones) if zones else group.id))
    return ", ".join(scopes) or "no scope"


def policy_piece_id(permission_group_id: str, resource_group_id: str) -> str:
    """A piece of policy access: a permission group on one resource group."""
    return f"{permission_group_id}@{resource_group_id}"


def access_pieces(member: Member, account_id: str, *, policies: bool = False) -> list[tuple[str, str]]:
    """(id, shown text) of each piece of access: policies in the policies model (`policies`) or when
    the member has no roles, else roles."""
    if member.roles and not (policies and member.policies):
        return [(role.id, role.name or role.id) for role in member.roles]
    pieces = []
    for policy in member.policies:
        deny = "deny " if policy.access == "deny" else ""
        scope = _scope(policy, account_id)
        for group in policy.permission_groups:
            shown = group.name or group.label or group.id
            for piece_id in [policy_piece_id(group.id, rg.id) for rg in policy.resource_groups] or [group.id]:
                pieces.append((piece_id, f"{deny}{shown} on {scope}"))
    return pieces


def grant_piece_ids(model: str | None, grantable_ids: Iterable[str], resource_group_id: str | None) -> frozenset[str]:
    """The pieces a request granted, in the ids `access_pieces` gives them."""
    if model == "policies" and resource_group_id:
        return frozenset(policy_piece_id(grantable_id, resource_group_id) for grantable_id in grantable_ids)
    return frozenset(grantable_ids)


def build_row(
    account: Account,
    member: Member,
    grants: Sequence[Grant],
    person: SlackPerson,
    super_admin_ids: frozenset[str],
    *,
    policies: bool = False,
) -> ReportRow:
    pieces = access_pieces(member, account.id, policies=policies)
    granted_ids = frozenset().union(*(grant.piece_ids for grant in grants)) if grants else frozenset()
    granted_by = [f"#{grant.request_id}" for grant in sorted(grants, key=lambda grant: grant.request_id)]
    if not grants or any(piece_id not in granted_ids for piece_id, _ in pieces):
        granted_by.append(OUTSIDE)
    ends = [grant.access_ends_at for grant in grants if grant.access_ends_at is not None]
    invited = [grant.invited_at for grant in grants if grant.invited_at is not None]
    return ReportRow(
        account_id=account.id,
        account=account.label,
        member_id=member.id,
        email=member.contact_email,
        status=member.status,
        access=tuple(text for _, text in pieces),
        granted_by=tuple(granted_by),
        access_ends_at=min(ends) if ends else None,
        slack_status=person.status,
        two_factor=member.user.two_factor_authentication_enabled if member.accepted else None,
        super_admin=member.accepted and holds_super_admin(member, account.id, super_admin_ids),
        invited_at=max(invited) if invited and member.status == "pending" else None,
    )


def _shown(row: ReportRow) -> str:
    return row.email or f"(no e-mail, member {row.member_id})"


def findings_for(rows: Sequence[ReportRow], *, now: datetime, stale_after: timedelta) -> tuple[Finding, ...]:
    """The findings, always all of them and in this order (an empty one says "none")."""
    pending = [row for row in rows if row.status == "pending"]
    stale = [row for row in pending if row.invited_at is not None and now - row.invited_at > stale_after]
    return (
        Finding("outside", "added outside the bot", tuple(_shown(row) for row in rows if row.outside_only)),
        Finding(
            "deactivated",
            "deactivated in Slack",
            tuple(_shown(row) for row in rows if row.slack_status == DEACTIVATED),
        ),
        Finding(
            "stale_invites",
            f"pending for over {format_duration(stale_after)}",
            tuple(
                f"{_shown(row)} (pending {format_duration(now - row.invited_at)}, {', '.join(row.granted_by)})"
                for row in stale
                if row.invited_at is not None
            ),
        ),
        Finding(
            "unknown_age_invites",
            "pending, invited outside the bot (age unknown)",
            tuple(_shown(row) for row in pending if row.invited_at is None),
        ),
        Finding("no_two_factor", "without 2FA", tuple(_shown(row) for row in rows if row.two_factor is False)),
        Finding(
            "not_in_slack",
            "not found in Slack",
            tuple(_shown(row) for row in rows if row.slack_status == NOT_FOUND),
        ),
    )


def review_account(
    account: Account,
    members: Sequence[Member],
    grants: Iterable[Grant],
    people: Mapping[str, SlackPerson],
    *,
    super_admin_ids: frozenset[str],
    now: datetime,
    stale_after: timedelta,
    fallback_approvers: Sequence[str] = (),
    policies: bool = False,
) -> AccountReview:
    by_member: dict[str, list[Grant]] = defaultdict(list)
    for grant in grants:
        by_member[grant.member_id].append(grant)
    rows = sorted(
        (
            build_row(
                account,
                member,
                by_member.get(member.id, []),
                people.get(member.contact_email, SlackPerson(NOT_FOUND)),
                super_admin_ids,
                policies=policies,
            )
            for member in members
        ),
        key=lambda row: (row.email == "", row.email, row.member_id),
    )
    super_admins = tuple(row.email for row in rows if row.super_admin)
    approvers = tuple(
        sorted(
            {
                person.user_id
                for email in super_admins
                if (person := people.get(email)) is not None and person.user_id and person.status != DEACTIVATED
            }
        )
    )
    return AccountReview(
        account_id=account.id,
        account_name=account.label,
        rows=tuple(rows),
        findings=findings_for(rows, now=now, stale_after=stale_after),
        super_admins=super_admins,
        enforces_two_factor=account.settings.enforce_twofactor,
        approvers=approvers or tuple(fallback_approvers),
    )


# --- the collector: Cloudflare, the database and Slack, once each -------------------------------


class AccessReport:
    """One review run: reads the requests table once, then each account when asked."""

    def __init__(self, services: Services, *, progress: Callable[[str], None] | None = None) -> None:
        self._services = services
        self._progress = progress or (lambda _line: None)
        self.people = SlackPeople(services.slack)
        self._grants_by_account: dict[str, list[Grant]] | None = None

    def accounts(self) -> list[Account]:
        return self._services.directory.accounts()

    def review(self, account: Account) -> AccountReview:
        """Raises CloudflareError when the account's members cannot be read."""
        services = self._services
        grants = self._grants(account.id)
        members = services.cloudflare.list_members(account.id)
        access = services.directory.access(account.id)
        large = len(members) >= PROGRESS_FROM
        emails = sorted({member.contact_email for member in members if member.contact_email})
        pages = self.people.pages
        self.people.prefetch(emails)
        asked = {email.lower() for email in emails}
        answered = sum(self.people.answered(email) for email in asked)
        if large:
            self._progress(
                f"{account.label}: {len(members)} members read; {answered} of {len(asked)} e-mails answered "
                f"without a look-up ({self.people.pages - pages} pages of Slack's user list), "
                f"{len(asked) - answered} to look up"
            )
        people: dict[str, SlackPerson] = {}
        lookups, shown = self.people.lookups, 0
        for email in emails:
            people[email] = self.people.find(email)
            done = self.people.lookups - lookups
            if large and done != shown and done % PROGRESS_EVERY == 0:
                shown = done
                self._progress(f"{account.label}: {done}/{len(asked) - answered} looked up in Slack")
        return review_account(
            account,
            members,
            grants,
            people,
            super_admin_ids=access.super_admin_ids,
            policies=access.model.value == "policies",
            now=services.clock.now(),
            stale_after=services.settings.invite_expires_after,
            fallback_approvers=services.settings.fallback_approvers,
        )

    def _grants(self, account_id: str) -> list[Grant]:
        if self._grants_by_account is None:
            self._grants_by_account = self._load_requests()
        return self._grants_by_account.get(account_id, [])

    def _load_requests(self) -> dict[str, list[Grant]]:
        """Every request once: the grants, and the Slack id each e-mail asked with (deactivated people
        are not found by e-mail, but are by id)."""
        grants: dict[str, list[Grant]] = defaultdict(list)
        with self._services.db.session() as session:
            for request in iter_requests(session):
                self.people.know(request.requester_email, request.requester_slack_id)
                granted = request.member_created_by_bot or (request.member_added_to and request.access_added)
                if request.status in GRANTING and granted and request.cloudflare_member_id:
                    # Access added to an existing member: only what was added is the bot's grant.
                    ids = (request.access_added or {}).get("ids") if request.member_added_to else None
                    grants[request.account_id].append(
                        Grant(
                            request_id=request.id,
                            member_id=request.cloudflare_member_id,
                            piece_ids=grant_piece_ids(
                                request.access_model,
                                ids or request.granted_role_ids or request.requested_role_ids or [],
                                request.resource_group_id,
                            ),
                            invited_at=request.invited_at,
                            access_ends_at=request.access_ends_at,
                        )
                    )
        return grants
