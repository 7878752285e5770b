"""Where a policy applies: the whole account, or exactly a set of zones (a resource group).

The account-wide resource group is found by listing, never created. A zone grant reuses a group
whose scope is exactly those zones, or creates one: the list is read again just before creating,
so a group created meanwhile (or by an earlier attempt whose answer was lost) is reused instead.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence

from bot.access.directory import Directory
from bot.cloudflare.client import CloudflareClient
from bot.cloudflare.errors import CloudflareError
from bot.cloudflare.models import ResourceGroup, zone_scope_key
from bot.slack.formatting import scope_label

log = logging.getLogger(__name__)
#: Zones per grant. Cloudflare documents no maximum per resource group; this one keeps a grant
#: reviewable at a glance and within what the form's multi-select shows.
MAX_ZONES = 20
_NAME_PREFIX = "cf-access-bot"
_NAME_MAX = 120


class NoAccountWideGroup(CloudflareError):
    """The account lists no account-wide resource group: an account-wide policy has nowhere to go."""


def group_name(zone_names: Sequence[str]) -> str:
    """A readable name that says who made the group; long zone lists are shortened with a digest."""
    names = sorted(name.lower() for name in zone_names)
    readable = f"{_NAME_PREFIX}: {', '.join(names)}"
    if len(readable) <= _NAME_MAX:
        return readable
    digest = hashlib.sha256(",".join(names).encode()).hexdigest()[:8]
    return f"{_NAME_PREFIX}: {names[0]} and {len(names) - 1} more zones ({digest})"


def matching_group(groups: Sequence[ResourceGroup], account_id: str, zone_ids: Sequence[str]) -> ResourceGroup | None:
    """The account-wide group (no zones), or one whose scope is exactly `zone_ids`, nothing more."""
    if not zone_ids:
        wide = [group for group in groups if group.is_account_wide(account_id)]
        # A group named after the account is the one Cloudflare made; prefer it over look-alikes.
        wide.sort(key=lambda group: group.name != f"com.cloudflare.api.account.{account_id}")
        return wide[0] if wide else None
    wanted = {zone_scope_key(zone_id) for zone_id in zone_ids}
    return next((group for group in groups if group.object_keys() == wanted), None)


def resource_group_for(
    cloudflare: CloudflareClient,
    directory: Directory,
    account_id: str,
    zone_ids: Sequence[str],
    zone_names: Sequence[str],
) -> ResourceGroup:
    """The group a grant goes on; a zone group is created when none has exactly these zones."""
    found = matching_group(directory.resource_groups(account_id), account_id, zone_ids)
    if found is not None:
        return found
    found = matching_group(directory.resource_groups(account_id, fresh=True), account_id, zone_ids)
    if found is not None:
        return found
    if not zone_ids:
        raise NoAccountWideGroup(f"Cloudflare lists no account-wide resource group for account {account_id}")
    created = cloudflare.create_resource_group(account_id, name=group_name(zone_names), zone_ids=sorted(zone_ids))
    log.info("created resource group %s for %s in account %s", created.id, scope_label(zone_names), account_id)
    directory.record_resource_group(account_id, created)
    return created
