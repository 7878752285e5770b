"""What the bot knows of Cloudflare and Slack people: accounts, what can be granted in each (roles
or permission groups), zones, resource groups, members, approvers.

Everything is cached briefly (DIRECTORY_CACHE_TTL) so that a burst of requests costs a constant
number of Cloudflare reads; the member index is also updated with every member the bot creates.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import timedelta

from bot.access.access_model import AccessModel, AccountAccess, Grantable, is_super_admin_name, requestable
from bot.cloudflare.client import CloudflareClient
from bot.cloudflare.errors import CloudflareClientError, CloudflareError, CloudflareNotFound
from bot.cloudflare.models import Account, Member, ResourceGroup, Role, Zone, account_scope_key
from bot.core.clock import Clock
from bot.core.config import Settings
from bot.core.ttl_cache import Background, TtlCache
from bot.slack.gateway import NO_ANSWER, SLACK_FAILED, SlackGateway, failure_reason

log = logging.getLogger(__name__)
#: Cloudflare or Slack could not say who the approvers are now.
_CANNOT_SAY: tuple[type[Exception], ...] = (CloudflareError, *SLACK_FAILED)
#: How long a failed Slack look-up is not tried again, and an approver list missing someone whose
#: look-up failed is kept: short, so a Super Admin is back soon; long enough that an outage costs
#: one round of slack_sdk's retries per half minute, not one per click or reminder.
LOOKUP_FAILURE_MEMORY = timedelta(seconds=30)


@dataclass(frozen=True)
class Approver:
    slack_id: str
    email: str | None
    #: The Cloudflare membership that makes them an approver; None for FALLBACK_APPROVERS.
    member_id: str | None = None


class ApproverList(list[Approver]):
    """Approvers as loaded; `complete` is False when a Super Admin's Slack look-up failed (left out
    this time, not known to be absent)."""

    def __init__(self, approvers: Iterable[Approver] = (), *, complete: bool = True) -> None:
        super().__init__(approvers)
        self.complete = complete


class ApproversUnknown(Exception):
    """Slack could not say whether someone approves: neither yes nor no."""


@dataclass(frozen=True)
class MemberIndex:
    by_email: dict[str, Member]

    def find(self, email: str) -> Member | None:
        return self.by_email.get(email.lower())


def is_super_admin_role(role: Role) -> bool:
    return is_super_admin_name(role.name)


def account_wide_key(account_id: str) -> str:
    return account_scope_key(account_id)


def holds_super_admin(member: Member, account_id: str, super_admin_ids: frozenset[str]) -> bool:
    """Super Administrator by legacy role, or by an `allow` policy of the `all_privileges` group on
    the account-wide resource group (the dashboard may grant it only that way since 2026).

    `super_admin_ids`: the Super Administrator role or permission group ids of the account's model.
    """
    if member.role_ids & super_admin_ids or any(is_super_admin_role(role) for role in member.roles if role.name):
        return True
    return any(
        policy.access == "allow"
        and any(group.label == "all_privileges" or group.id in super_admin_ids for group in policy.permission_groups)
        and any(group.is_account_wide(account_id) for group in policy.resource_groups)
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
        # The account's model and what can be granted in it; zones feed the form's zone search.
        self._access: TtlCache[str, AccountAccess] = TtlCache(clock, ttl, background=background)
        self._zones: TtlCache[str, list[Zone]] = TtlCache(clock, ttl, background=background)
        self._other_model: TtlCache[str, tuple[Grantable, ...]] = TtlCache(clock, ttl)
        self._resource_groups: TtlCache[str, list[ResourceGroup]] = TtlCache(clock, ttl)
        self._background = background
        self._members: TtlCache[str, MemberIndex] = TtlCache(clock, ttl)
        # A list missing a Super Admin whose look-up failed is kept no longer than that failure is.
        self._approvers: TtlCache[str, ApproverList] = TtlCache(
            clock, ttl, ttl_of=lambda approvers: ttl if approvers.complete else min(ttl, LOOKUP_FAILURE_MEMORY)
        )
        self._slack_ids: TtlCache[str, str | None] = TtlCache(
            clock, ttl, failures=SLACK_FAILED, failure_ttl=min(ttl, LOOKUP_FAILURE_MEMORY)
        )
        # A clicker found not to be an approver by a fresh look stays refused until the TTL ends, so
        # that 40 clicks cost one member listing, not 40.
        self._refused_clickers: TtlCache[tuple[str, str], bool] = TtlCache(clock, ttl)

    # --- accounts and roles ---------------------------------------------------------------

    def accounts(self) -> list[Account]:
        return self._accounts.get("all", self._load_accounts)

    def cached_accounts(self) -> list[Account] | None:
        return self._accounts.peek("all")

    def is_warm(self, account_id: str) -> bool:
        """Accounts and what this account grants were loaded once: reading them costs no Cloudflare call."""
        return self._accounts.has("all") and self._access.has(account_id)

    def warm(self) -> None:
        """Load accounts and every account's model and grantables (at start-up), so the first modal
        waits on nothing."""
        try:
            for account in self.accounts():
                self.access(account.id)
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
        """The legacy roles (`GET .../roles`), whatever the account's model."""
        return self._roles.get(account_id, lambda: self._cloudflare.list_roles(account_id))

    # --- the access model ------------------------------------------------------------------------

    def access(self, account_id: str) -> AccountAccess:
        return self._access.get(account_id, lambda: self._load_access(account_id))

    def _load_access(self, account_id: str) -> AccountAccess:
        """`auto`: permission groups where the account's policies API answers, else roles. A refusal
        (404, 403) means "not here"; an outage raises, so a model is never decided on a timeout."""
        chosen = self._settings.cloudflare_access_model
        reason = ""
        if chosen != AccessModel.ROLES.value:
            try:
                groups = self._cloudflare.list_permission_groups(account_id)
            except CloudflareClientError as error:
                if chosen == AccessModel.POLICIES.value:
                    raise
                answer = f"HTTP {error.status}" + (f", code {error.code}" if error.code else "")
                if error.status in (401, 403):
                    reason = f"the token may not read permission groups ({answer}); one that may would use policies"
                    log.warning("account %s: %s; using legacy roles", account_id, reason)
                else:
                    reason = f"the account's permission-groups API is not there ({answer})"
                    log.info("account %s: %s; using legacy roles", account_id, reason)
            else:
                return AccountAccess(AccessModel.POLICIES, tuple(Grantable.of_permission_group(g) for g in groups))
        roles = tuple(Grantable.of_role(role) for role in self.roles(account_id))
        return AccountAccess(AccessModel.ROLES, roles, fallback_reason=reason)

    def grantables(self, account_id: str) -> list[Grantable]:
        return list(self.access(account_id).grantables)

    def requestable(self, account_id: str, *, zoned: bool | None = None) -> list[Grantable]:
        """REQUESTABLE_ROLES (by name, label or id; unset: all but Super Administrator), narrowed to
        what can be granted on zones (`zoned=True`) or on the whole account (`zoned=False`)."""
        allowed = requestable(self.grantables(account_id), self._settings.requestable_roles)
        return allowed if zoned is None else [grantable for grantable in allowed if grantable.fits(zoned)]

    def super_admin_ids(self, account_id: str) -> frozenset[str]:
        return self.access(account_id).super_admin_ids

    def other_model(self, account_id: str) -> list[Grantable]:
        """What the account's other model calls roles, to explain why a name exists only there.
        Read only when a name matched nothing; empty when that API does not answer."""

        def load() -> tuple[Grantable, ...]:
            try:
                if self.access(account_id).model is AccessModel.POLICIES:
                    return tuple(Grantable.of_role(role) for role in self._cloudflare.list_roles(account_id))
                groups = self._cloudflare.list_permission_groups(account_id)
                return tuple(Grantable.of_permission_group(group) for group in groups)
            except CloudflareClientError:
                return ()

        return list(self._other_model.get(account_id, load))

    # --- zones and resource groups -------------------------------------------------------------

    def zones(self, account_id: str) -> list[Zone]:
        """Every zone of the account, for the form's search; served stale while a refresh runs."""
        return self._zones.get(account_id, lambda: sorted(self._cloudflare.list_zones(account_id), key=_zone_order))

    def zones_within(self, account_id: str, seconds: float) -> list[Zone] | None:
        """The zones if they are cached, or if a load finishes within `seconds` (None otherwise), so
        that an options request answers Slack in time whatever Cloudflare does."""
        if self._zones.has(account_id) or self._background is None:
            return self.zones(account_id)
        loaded: list[list[Zone]] = []
        done = threading.Event()

        def load() -> None:
            try:
                loaded.append(self.zones(account_id))
            except CloudflareError as error:
                log.warning("could not list the zones of %s: %s", account_id, error)
            finally:
                done.set()

        try:
            self._background(load)
        except RuntimeError:  # shutting down
            return None
        done.wait(seconds)
        return loaded[0] if loaded else None

    def warm_zones(self, account_id: str) -> None:
        """Start loading the zones (an account was chosen in the form) without waiting."""
        if self._background is not None and not self._zones.has(account_id):
            self.zones_within(account_id, 0)

    def find_zone(self, account_id: str, name: str) -> Zone | None:
        """One zone by its exact name: one call (`GET /zones?account.id=...&name=...`), or none if
        the account's zones are cached."""
        cached = self._zones.peek(account_id)
        wanted = name.strip().lower().rstrip(".")
        if cached is not None:
            return next((zone for zone in cached if zone.name.lower() == wanted), None)
        return next(
            (zone for zone in self._cloudflare.find_zones(account_id, wanted) if zone.name.lower() == wanted), None
        )

    def resource_groups(self, account_id: str, *, fresh: bool = False) -> list[ResourceGroup]:
        return self._resource_groups.get(
            account_id, lambda: self._cloudflare.list_resource_groups(account_id), fresh=fresh
        )

    def record_resource_group(self, account_id: str, group: ResourceGroup) -> None:
        cached = self._resource_groups.peek(account_id)
        if cached is not None:
            self._resource_groups.put(account_id, [*cached, group])

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

    def forget_members(self, account_id: str) -> None:
        """The index no longer tells the truth (an update whose answer could not be read)."""
        self._members.invalidate(account_id)

    def forget_member(self, account_id: str, email: str) -> None:
        index = self._members.peek(account_id)
        if index is not None:
            remaining = {key: value for key, value in index.by_email.items() if key != email.lower()}
            self._members.put(account_id, MemberIndex(remaining))

    # --- approvers ------------------------------------------------------------------------------

    def approvers(self, account_id: str, *, fresh: bool = False) -> ApproverList:
        """Accepted Super Administrators found in Slack by e-mail; FALLBACK_APPROVERS when none is."""
        return self._approvers.get(account_id, lambda: self._load_approvers(account_id, fresh), fresh=fresh)

    def _load_approvers(self, account_id: str, fresh: bool) -> ApproverList:
        super_admin_ids = self.super_admin_ids(account_id)
        index = self.members(account_id, fresh=fresh)
        approvers: list[Approver] = []
        failed: Exception | None = None
        for email, member in sorted(index.by_email.items()):
            if member.accepted and holds_super_admin(member, account_id, super_admin_ids):
                if isinstance(failed, NO_ANSWER) and not self._slack_ids.is_fresh(email.lower()):
                    # Slack is not answering: asking for the others would only wait through the
                    # same retries again. Those not known already are left out this time.
                    continue
                try:
                    slack_id = self.slack_id_for(email)
                except SLACK_FAILED as error:  # one lookup failing must not lose every other approver
                    log.warning(
                        "could not look up approver %s in Slack (%s); skipped this time", email, failure_reason(error)
                    )
                    failed = error
                    continue
                if slack_id:
                    approvers.append(Approver(slack_id, email, member.id))
        if not approvers and failed is not None:
            # Slack could not say who they are: not "no Super Admin reachable". FALLBACK_APPROVERS
            # decide only when Slack said so, and nothing is cached.
            raise failed
        if not approvers:
            approvers = [Approver(slack_id, None) for slack_id in self._settings.fallback_approvers]
        return ApproverList(approvers, complete=failed is None)

    def approver_ids(self, account_id: str, *, fresh: bool = False) -> frozenset[str]:
        return frozenset(approver.slack_id for approver in self.approvers(account_id, fresh=fresh))

    def approver_ids_to_tell(self, account_id: str) -> frozenset[str]:
        """The approvers to mention or tell in a message. When Cloudflare or Slack cannot say now:
        those of the last list loaded, or none (the message goes out rather than not at all).
        Never for deciding who may decide: that is `is_approver`."""
        try:
            return self.approver_ids(account_id)
        except _CANNOT_SAY as error:
            last = self._approvers.last(account_id)
            log.warning(
                "could not tell who approves for %s now (%s): told %s",
                account_id,
                type(error).__name__,
                "those last known" if last else "without them",
            )
            return frozenset(approver.slack_id for approver in last or ())

    def slack_id_for(self, email: str) -> str | None:
        return self._slack_ids.get(email.lower(), lambda: self._slack.lookup_user_id(email))

    def is_approver(self, account_id: str, slack_id: str) -> bool:
        """Confirmed against Cloudflare at click time, so a demoted or removed Super Admin is refused at once.

        An approver in the cached list costs one read of their own membership; anyone else one fresh
        listing at most per DIRECTORY_CACHE_TTL (a refusal is remembered), so a newly made Super
        Admin may decide at once and a stranger's clicks cannot burn the Cloudflare budget.
        Raises CloudflareError when Cloudflare cannot answer (the caller refuses and says so).
        """
        try:
            listed = self.approvers(account_id)
        except SLACK_FAILED as error:
            raise ApproversUnknown(f"Slack could not say who approves for {account_id}") from error
        cached = next((a for a in listed if a.slack_id == slack_id), None)
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
                and holds_super_admin(member, account_id, self.super_admin_ids(account_id))
            )
            if confirmed:
                return True
            log.warning("%s is no longer a Super Administrator of %s; refreshing approvers", slack_id, account_id)
            self._approvers.invalidate(account_id)
            self._members.invalidate(account_id)
            return False
        if self._refused_clickers.peek((account_id, slack_id)):
            return False
        try:
            fresh = self.approvers(account_id, fresh=True)
        except SLACK_FAILED as error:
            raise ApproversUnknown(f"Slack could not say who approves for {account_id}") from error
        if any(approver.slack_id == slack_id for approver in fresh):
            return True
        if not fresh.complete:
            # Their own look-up may be the one that failed: not a refusal, and nothing remembered.
            raise ApproversUnknown(f"Slack could not say who approves for {account_id}")
        self._refused_clickers.put((account_id, slack_id), True)
        return False

    def accounts_approved_by(self, slack_id: str, account_ids: Sequence[str]) -> list[str]:
        """The accounts whose requests `slack_id` decides; an account Cloudflare or Slack cannot
        answer for now is left out (one account's outage must not break everyone's queue)."""
        approved = []
        for account_id in account_ids:
            try:
                if slack_id in self.approver_ids(account_id):
                    approved.append(account_id)
            except _CANNOT_SAY as error:
                log.warning("could not tell who approves for %s now (%s): left out", account_id, type(error).__name__)
        return approved


def _zone_order(zone: Zone) -> str:
    return zone.name.lower()
