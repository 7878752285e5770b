"""What an existing member holds, and the `PUT .../members/{id}` that adds or removes exactly a grant.

A PUT replaces the member's whole access, so the body always carries everything the member holds
plus (or minus) the grant: nothing else is ever lost or changed. The grant is recorded as
`access_added` (see `added_record`) so that its removal takes away exactly that, later.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bot.access.access_model import AccessModel
from bot.cloudflare.models import GroupRef, Member, Policy, PolicySpec, zone_scope_key


@dataclass(frozen=True)
class MemberUpdate:
    """The body of a member PUT: roles or policies, never both."""

    role_ids: list[str] | None = None
    policies: list[PolicySpec] | None = None


def _on_scope(group: GroupRef, account_id: str, zone_ids: Sequence[str], resource_group_id: str | None) -> bool:
    if resource_group_id and group.id == resource_group_id:
        return True
    if not zone_ids:
        return group.is_account_wide(account_id)
    return group.object_keys() == {zone_scope_key(zone_id) for zone_id in zone_ids}


def holds(
    member: Member,
    account_id: str,
    model: AccessModel,
    grantable_id: str,
    *,
    zone_ids: Sequence[str] = (),
    resource_group_id: str | None = None,
) -> bool:
    """Whether the member holds one role, or one permission group allowed on exactly that scope."""
    if model is AccessModel.ROLES:
        return grantable_id in member.role_ids
    return any(
        policy.access == "allow"
        and any(group.id == grantable_id for group in policy.permission_groups)
        and any(_on_scope(group, account_id, zone_ids, resource_group_id) for group in policy.resource_groups)
        for policy in member.policies
    )


def missing(
    member: Member,
    account_id: str,
    model: AccessModel,
    grantable_ids: Sequence[str],
    *,
    zone_ids: Sequence[str] = (),
    resource_group_id: str | None = None,
) -> list[str]:
    """The ids of the grant the member does not hold yet, in the grant's order."""
    return [
        grantable_id
        for grantable_id in grantable_ids
        if not holds(member, account_id, model, grantable_id, zone_ids=zone_ids, resource_group_id=resource_group_id)
    ]


def held_access(member: Member, account_id: str, model: AccessModel) -> str:
    """Plain text of what the member holds, in the account's model (escape it for Slack)."""
    if model is AccessModel.ROLES or not member.policies:
        return ", ".join(role.name or role.id for role in member.roles) or "no role"
    pieces = []
    for policy in member.policies:
        groups = ", ".join(group.name or group.label or group.id for group in policy.permission_groups)
        scopes = ", ".join(
            "the whole account" if group.is_account_wide(account_id) else (group.name or group.id)
            for group in policy.resource_groups
        )
        pieces.append(f"{'deny ' if policy.access == 'deny' else ''}{groups} on {scopes}")
    return "; ".join(pieces) or "no policy"


def roles_would_lose(member: Member, account_id: str) -> bool:
    """A roles PUT makes the member's policies those of their roles (account-wide, allow): a deny
    or a zone-scoped policy they hold would be lost, so such a member is never updated by roles."""
    return any(
        policy.access != "allow" or not all(group.is_account_wide(account_id) for group in policy.resource_groups)
        for policy in member.policies
    )


def added_record(model: AccessModel, grantable_ids: Sequence[str], resource_group_id: str | None) -> dict[str, Any]:
    """What the bot added to an existing membership, as stored on the request (`access_added`)."""
    record: dict[str, Any] = {"model": model.value, "ids": list(grantable_ids)}
    if model is AccessModel.POLICIES:
        record["resource_group_id"] = resource_group_id
    return record


def with_added(member: Member, model: AccessModel, added: Sequence[str], resource_group_id: str | None) -> MemberUpdate:
    """Everything the member holds, plus `added` (ids the member does not hold yet)."""
    if model is AccessModel.ROLES:
        held = [role.id for role in member.roles]
        return MemberUpdate(role_ids=held + [role_id for role_id in added if role_id not in held])
    assert resource_group_id is not None
    kept = [PolicySpec.of(policy) for policy in member.policies]
    grant = PolicySpec(access="allow", permission_group_ids=tuple(added), resource_group_ids=(resource_group_id,))
    return MemberUpdate(policies=[*kept, grant])


def without_added(member: Member, record: Mapping[str, Any]) -> MemberUpdate | None:
    """Everything the member holds now, less exactly what the bot added; None when they hold none of
    it any more (removed in the dashboard meanwhile): then there is nothing to send."""
    ids = {str(grantable_id) for grantable_id in record.get("ids") or []}
    if record.get("model") != AccessModel.POLICIES.value:
        remaining = [role.id for role in member.roles if role.id not in ids]
        return MemberUpdate(role_ids=remaining) if len(remaining) != len(member.roles) else None
    resource_group_id = str(record.get("resource_group_id") or "")
    changed = False
    kept: list[PolicySpec] = []
    for policy in member.policies:
        if policy.access == "allow" and any(group.id == resource_group_id for group in policy.resource_groups):
            left = _without(policy, ids)
            changed = changed or left is not policy
            if left is not None and left.permission_groups:
                kept.append(PolicySpec.of(left))
            continue
        kept.append(PolicySpec.of(policy))
    return MemberUpdate(policies=kept) if changed else None


def _without(policy: Policy, ids: set[str]) -> Policy | None:
    groups = [group for group in policy.permission_groups if group.id not in ids]
    if len(groups) == len(policy.permission_groups):
        return policy
    return policy.model_copy(update={"permission_groups": groups}) if groups else None
