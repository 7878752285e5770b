"""What the bot knows of Cloudflare and Slack people: accounts, roles, members, approvers.

Everything is cached briefly (DIRECTORY_CACHE_TTL) so that a burst of requests costs a constant
number of Cloudflare reads; the member index is also updated with every member the bot creates.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from bot.cloudflare.client import CloudflareClient
from bot.cloudflare.errors import CloudflareError, CloudflareNotFound
from bot.cloudflare.models import Account, Member, Role
from bot.core.clock import Clock
from bot.core.config import Settings
from bot.core.ttl_cache import Background, TtlCache
from bot.slack.gateway import SlackError, SlackGateway

log = logging.getLogger(__name__)
SUPER_ADMIN_ROLE_PREFIX = "super administrator"


@dataclass(frozen=True)
class Approver:
    slack_id: str
    email: str | None
    #: The Cloudflare membership that makes them an approver; None for FALLBACK_APPROVERS.
    member_id: str | None = None


@dataclass(frozen=True)
class MemberIndex:
    by_email: dict[str, Member]

    def find(self, email: str) -> Member | None:
        return self.by_email.get(email.lower())


def is_super_admin_role(role: Role) -> bool:
    return role.name.casefold().startswith(SUPER_ADMIN_ROLE_PREFIX)


def account_wide_key(account_id: str) -> str:
    return f"com.cloudflare.api.account.{account_id}"


def holds_super_admin(member: Member, account_id: str, super_admin_role_ids: frozenset[str]) -> bool:
    """Super Administrator by legacy role, or by an `allow` policy of the `all_privileges` group on
    the account-wide resource group (the dashboard may grant it only that way since 2026)."""
    if member.role_ids & super_admin_role_ids or any(is_super_admin_role(role) for role in member.roles if role.name):
        return True
    account_wide = account_wide_key(account_id)
    return any(
        policy.access == "allow"
        and any(group.label == "all_privileges" for group in policy.permission_groups)
        and any(group.name == account_wide or account_wide in group.scope_keys() for group in policy.resource_groups)
        for policy in member.policies
    )


class Directory:
    def __init__(
        self,
        *,
        settings: Settings,
        cloudflare: CloudflareClient,
        slack: SlackGateway,
        clock: Clock,
        background: Background | None = None,
    ) -> None:
        ttl = settings.directory_cache_ttl
        self._settings = settings
        self._cloudflare = cloudflare
        self._slack = slack
        # Accounts and roles change rarely: once loaded they are served while a refresh runs in the
        # background, so paths that answer Slack (modal submission, messages) never wait on Cloudflare.
        # Members and approvers decide who may do what: always fresh within the TTL.
        self._accounts: TtlCache[str, list[Account]] = TtlCache(clock, ttl, background=background)
        self._roles: TtlCache[str, list[Role]] = TtlCache(clock, ttl, background=background)
        self._members: TtlCache[str, MemberIndex] = TtlCache(clock, ttl)
        self._approvers: TtlCache[str, list[Approver]] = TtlCache(clock, ttl)
        self._slack_ids: TtlCache[str, str | None] = TtlCache(clock, ttl)
        # A clicker found not to be an approver by a fresh look stays refused until the TTL ends, so
        # that 40 clicks cost one member listing, not 40.
        self._refused_clickers: TtlCache[tuple[str, str], bool] = TtlCache(clock, ttl)

    # --- accounts and roles ---------------------------------------------------------------

    def accounts(self) -> list[Account]:
        return self._accounts.get("all", self._load_accounts)

    def cached_accounts(self) -> list[Account] | None:
        return self._accounts.peek("all")

    def is_warm(self, account_id: str) -> bool:
        """Accounts and this account's roles were loaded once: reading them costs no Cloudflare call."""
        return self._accounts.has("all") and self._roles.has(account_id)

    def warm(self) -> None:
        """Load accounts and every account's roles (at start-up), so the first modal waits on nothing."""
        try:
            for account in self.accounts():
                self.roles(account.id)
        except CloudflareError as error:
            log.warning("could not load accounts and roles from Cloudflare at start-up: %s", error)

    def _load_accounts(self) -> list[Account]:
        allowlist = self._settings.cloudflare_account_ids
        if not allowlist:
            return sorted(self._cloudflare.list_accounts(), key=lambda account: account.name.casefold())
        accounts = []
        for account_id in allowlist:
            try:
                accounts.append(self._cloudflare.get_account(account_id))
            except CloudflareNotFound:
                log.warning("account %s in CLOUDFLARE_ACCOUNT_IDS is not visible to the token", account_id)
        return accounts

    def account(self, account_id: str) -> Account | None:
        return next((account for account in self.accounts() if account.id == account_id), None)

    def roles(self, account_id: str) -> list[Role]:
        return self._roles.get(account_id, lambda: self._cloudflare.list_roles(account_id))

    def requestable_roles(self, account_id: str) -> list[Role]:
        """REQUESTABLE_ROLES by name or id; unset means every role but Super Administrator."""
        allowed = {entry.casefold() for entry in self._settings.requestable_roles}
        roles = self.roles(account_id)
        if not allowed:
            return [role for role in roles if not is_super_admin_role(role)]
        return [role for role in roles if role.id.casefold() in allowed or role.name.casefold() in allowed]

    def super_admin_role_ids(self, account_id: str) -> frozenset[str]:
        return frozenset(role.id for role in self.roles(account_id) if is_super_admin_role(role))

    # --- members -------------------------------------------------------------------------------

    def members(self, account_id: str, *, fresh: bool = False) -> MemberIndex:
        return self._members.get(account_id, lambda: self._load_members(account_id), fresh=fresh)

    def _load_members(self, account_id: str) -> MemberIndex:
        members = self._cloudflare.list_members(account_id)
        return MemberIndex({member.contact_email: member for member in members if member.contact_email})

    def record_member(self, account_id: str, member: Member) -> None:
        """Keep the index true after the bot creates or deletes a member, without a read."""
        index = self._members.peek(account_id)
        if index is not None:
            self._members.put(account_id, MemberIndex({**index.by_email, member.contact_email: member}))

    def forget_member(self, account_id: str, email: str) -> None:
        index = self._members.peek(account_id)
        if index is not None:
            remaining = {key: value for key, value in index.by_email.items() if key != email.lower()}
            self._members.put(account_id, MemberIndex(remaining))

    # --- approvers ------------------------------------------------------------------------------

    def approvers(self, account_id: str, *, fresh: bool = False) -> list[Approver]:
        """Accepted Super Administrators found in Slack by e-mail; FALLBACK_APPROVERS when none is."""
        return self._approvers.get(account_id, lambda: self._load_approvers(account_id, fresh), fresh=fresh)

    def _load_approvers(self, account_id: str, fresh: bool) -> list[Approver]:
        super_admin_ids = self.super_admin_role_ids(account_id)
        index = self.members(account_id, fresh=fresh)
        approvers: list[Approver] = []
        for email, member in sorted(index.by_email.items()):
            if member.accepted and holds_super_admin(member, account_id, super_admin_ids):
                try:
                    slack_id = self.slack_id_for(email)
                except SlackError as error:  # one lookup failing must not lose every other approver
                    log.warning("could not look up approver %s in Slack (%s); skipped this time", email, error.code)
                    continue
                if slack_id:
                    approvers.append(Approver(slack_id, email, member.id))
        if not approvers:
            approvers = [Approver(slack_id, None) for slack_id in self._settings.fallback_approvers]
        return approvers

    def approver_ids(self, account_id: str, *, fresh: bool = False) -> frozenset[str]:
        return frozenset(approver.slack_id for approver in self.approvers(account_id, fresh=fresh))

    def slack_id_for(self, email: str) -> str | None:
        return self._slack_ids.get(email.lower(), lambda: self._slack.lookup_user_id(email))

    def is_approver(self, account_id: str, slack_id: str) -> bool:
        """Confirmed against Cloudflare at click time, so a demoted or removed Super Admin is refused at once.

        An approver in the cached list costs one read of their own membership; anyone else one fresh
        listing at most per DIRECTORY_CACHE_TTL (a refusal is remembered), so a newly made Super
        Admin may decide at once and a stranger's clicks cannot burn the Cloudflare budget.
        Raises CloudflareError when Cloudflare cannot answer (the caller refuses and says so).
        """
        cached = next((a for a in self.approvers(account_id) if a.slack_id == slack_id), None)
        if cached is not None:
            if cached.member_id is None:
                return True  # FALLBACK_APPROVERS: no Super Admin of this account is reachable in Slack
            try:
                member = self._cloudflare.get_member(account_id, cached.member_id)
            except CloudflareNotFound:
                member = None
            confirmed = (
                member is not None
                and member.accepted
                and member.contact_email == (cached.email or "")
                and holds_super_admin(member, account_id, self.super_admin_role_ids(account_id))
            )
            if confirmed:
                return True
            log.warning("%s is no longer a Super Administrator of %s; refreshing approvers", slack_id, account_id)
            self._approvers.invalidate(account_id)
            self._members.invalidate(account_id)
            return False
        if self._refused_clickers.peek((account_id, slack_id)):
            return False
        if slack_id in self.approver_ids(account_id, fresh=True):
            return True
        self._refused_clickers.put((account_id, slack_id), True)
        return False

    def accounts_approved_by(self, slack_id: str, account_ids: Sequence[str]) -> list[str]:
        return [account_id for account_id in account_ids if slack_id in self.approver_ids(account_id)]
