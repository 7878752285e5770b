"""Which access model an account speaks, and what a "role" is in it.

Cloudflare deprecated account roles (2026-07-21) for permission groups granted through member
policies. An account uses one model or the other (CLOUDFLARE_ACCESS_MODEL, `auto` per account), and
the rest of the workflow treats a role and a permission group alike, as a `Grantable`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from bot.cloudflare.models import PermissionGroup, Role

SUPER_ADMIN_NAME_PREFIX = "super administrator"
SUPER_ADMIN_LABEL = "all_privileges"
ACCOUNT_SCOPE = "com.cloudflare.api.account"
ZONE_SCOPE = "com.cloudflare.api.account.zone"


class AccessModel(StrEnum):
    ROLES = "roles"
    POLICIES = "policies"


def model_of(stored: str | None) -> AccessModel:
    """A request's stored model; requests filed before there was a choice used roles."""
    return AccessModel(stored) if stored in (AccessModel.ROLES.value, AccessModel.POLICIES.value) else AccessModel.ROLES


def is_super_admin_name(name: str) -> bool:
    return name.casefold().startswith(SUPER_ADMIN_NAME_PREFIX)


@dataclass(frozen=True)
class Grantable:
    """What a requester names and an approver grants: a legacy role or a permission group."""

    id: str
    name: str
    label: str = ""
    description: str = ""
    account_scopable: bool = True
    zone_scopable: bool = False
    super_admin: bool = False

    @classmethod
    def of_role(cls, role: Role) -> Grantable:
        return cls(id=role.id, name=role.name, description=role.description, super_admin=is_super_admin_name(role.name))

    @classmethod
    def of_permission_group(cls, group: PermissionGroup) -> Grantable:
        """`meta.scopes` says where the group may be granted; a group that names no scope is taken
        as account-wide (the scope every group of the changelog's examples has)."""
        scopes = group.scopes
        zone = any(scope.startswith(ZONE_SCOPE) for scope in scopes)
        return cls(
            id=group.id,
            name=group.name or group.label or group.id,
            label=group.label,
            description=group.description or group.label,
            account_scopable=ACCOUNT_SCOPE in scopes or not zone,
            zone_scopable=zone,
            super_admin=group.label == SUPER_ADMIN_LABEL or is_super_admin_name(group.name),
        )

    def fits(self, zoned: bool) -> bool:
        """Whether it can be granted on zones (`zoned`) or on the whole account."""
        return self.zone_scopable if zoned else self.account_scopable


@dataclass(frozen=True)
class AccountAccess:
    """An account's model and everything that can be granted in it (requestable or not)."""

    model: AccessModel
    grantables: tuple[Grantable, ...]
    #: Why `auto` chose legacy roles here, when it did (what `check` shows the operator).
    fallback_reason: str = ""

    def by_id(self, grantable_id: str) -> Grantable | None:
        return next((grantable for grantable in self.grantables if grantable.id == grantable_id), None)

    @property
    def super_admin_ids(self) -> frozenset[str]:
        return frozenset(grantable.id for grantable in self.grantables if grantable.super_admin)


def requestable(grantables: Sequence[Grantable], allowed: Sequence[str]) -> list[Grantable]:
    """REQUESTABLE_ROLES by name, label or id; unset means everything but Super Administrator."""
    wanted = {entry.casefold() for entry in allowed}
    if not wanted:
        return [grantable for grantable in grantables if not grantable.super_admin]
    return [
        grantable
        for grantable in grantables
        if {grantable.id.casefold(), grantable.name.casefold(), grantable.label.casefold()} & wanted
    ]
