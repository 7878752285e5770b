"""Pydantic models of the Cloudflare objects the bot reads.

Real answers are untidy: unknown fields are ignored, `null` stands for "not set" anywhere, and a
status the bot does not know is kept as it is (only `accepted` counts as a member).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


def _null_is_empty(value: Any) -> Any:
    return "" if value is None else value


class AccountSettings(_Model):
    """`settings` of an account; only what the bot reads. Absent or null means "not enforced"."""

    enforce_twofactor: bool = False

    @field_validator("enforce_twofactor", mode="before")
    @classmethod
    def _null_is_false(cls, value: Any) -> Any:
        return bool(value)


class Account(_Model):
    id: str
    name: str = ""
    type: str | None = None
    settings: AccountSettings = Field(default_factory=AccountSettings)

    @field_validator("name", mode="before")
    @classmethod
    def _name_may_be_null(cls, value: Any) -> Any:
        return _null_is_empty(value)

    @field_validator("settings", mode="before")
    @classmethod
    def _settings_may_be_null(cls, value: Any) -> Any:
        return value if isinstance(value, dict | AccountSettings) else {}

    @property
    def label(self) -> str:
        return self.name or self.id


class Role(_Model):
    id: str
    name: str
    description: str = ""

    @field_validator("description", mode="before")
    @classmethod
    def _description_may_be_null(cls, value: Any) -> Any:
        return _null_is_empty(value)


class MemberUser(_Model):
    id: str | None = None
    email: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    two_factor_authentication_enabled: bool = False

    @field_validator("two_factor_authentication_enabled", mode="before")
    @classmethod
    def _null_is_off(cls, value: Any) -> Any:
        return bool(value)


def account_scope_key(account_id: str) -> str:
    """The scope key of an account, and the name of its account-wide resource group."""
    return f"com.cloudflare.api.account.{account_id}"


ZONE_KEY_PREFIX = "com.cloudflare.api.account.zone."


def zone_scope_key(zone_id: str) -> str:
    return f"{ZONE_KEY_PREFIX}{zone_id}"


class _Labelled(_Model):
    """A group with a name and a free-form `meta` map (`label`, ...); null name or meta read as empty."""

    id: str = ""
    name: str = ""
    meta: dict[str, Any] = Field(default_factory=dict)

    @field_validator("name", mode="before")
    @classmethod
    def _name_may_be_null(cls, value: Any) -> Any:
        return _null_is_empty(value)

    @field_validator("meta", mode="before")
    @classmethod
    def _meta_is_a_map(cls, value: Any) -> Any:
        return value if isinstance(value, dict) else {}

    @property
    def label(self) -> str:
        return str(self.meta.get("label") or "")


class GroupRef(_Labelled):
    """A permission group or resource group as a member's policy carries it (expanded, `meta` free-form)."""

    scope: Any = None

    def _scopes(self) -> list[dict[str, Any]]:
        # One object in the 2026 schema, an array in the SDKs and the 2024 schema: both are read.
        scopes = self.scope if isinstance(self.scope, list) else [self.scope]
        return [scope for scope in scopes if isinstance(scope, dict)]

    def scope_keys(self) -> set[str]:
        return {str(scope["key"]) for scope in self._scopes() if scope.get("key")}

    def object_keys(self) -> set[str]:
        """The keys of the scope's objects: `*` for the whole account, or zone keys."""
        return {
            str(item["key"])
            for scope in self._scopes()
            for item in scope.get("objects") or []
            if isinstance(item, dict) and item.get("key")
        }

    @property
    def zone_ids(self) -> frozenset[str]:
        return frozenset(
            key.removeprefix(ZONE_KEY_PREFIX) for key in self.object_keys() if key.startswith(ZONE_KEY_PREFIX)
        )

    def is_account_wide(self, account_id: str) -> bool:
        """Named after the account, or scoped to the account with no narrower object than `*`.

        A zone group's scope key is the account's too: its objects tell the two apart."""
        key = account_scope_key(account_id)
        if self.name == key:
            return True
        return key in self.scope_keys() and self.object_keys() <= {"*", key}


class ResourceGroup(GroupRef):
    """A resource group as `.../iam/resource_groups` lists it: the account, or a set of zones."""

    id: str


class PermissionGroup(_Labelled):
    """A permission group (`.../iam/permission_groups`): what a role is in the policies model.

    `meta` is a free-form map: `label` (e.g. `admin`, `all_privileges`), `scopes` (a string, or a
    list, of the scopes it may be granted on) and `description`; any of them may be missing or null.
    """

    id: str

    @property
    def description(self) -> str:
        return str(self.meta.get("description") or "")

    @property
    def scopes(self) -> frozenset[str]:
        value = self.meta.get("scopes")
        items = value if isinstance(value, list) else str(value or "").replace(",", " ").split()
        return frozenset(str(item).strip() for item in items if str(item).strip())


class Zone(_Model):
    id: str
    name: str
    status: str = ""

    @field_validator("status", mode="before")
    @classmethod
    def _status_may_be_null(cls, value: Any) -> Any:
        return _null_is_empty(value)


class Policy(_Model):
    id: str | None = None
    access: str = "allow"
    permission_groups: list[GroupRef] = Field(default_factory=list)
    resource_groups: list[GroupRef] = Field(default_factory=list)

    @field_validator("permission_groups", "resource_groups", mode="before")
    @classmethod
    def _lists_may_be_null(cls, value: Any) -> Any:
        return value or []


class PolicySpec(_Model):
    """A policy as the bot sends it (`POST`/`PUT .../members`): ids only, never the policy's own id."""

    access: str = "allow"
    permission_group_ids: tuple[str, ...]
    resource_group_ids: tuple[str, ...]

    @classmethod
    def of(cls, policy: Policy) -> PolicySpec:
        """A policy the member holds, as it must be sent back for the member to keep it."""
        return cls(
            access=policy.access,
            permission_group_ids=tuple(group.id for group in policy.permission_groups),
            resource_group_ids=tuple(group.id for group in policy.resource_groups),
        )

    def body(self) -> dict[str, Any]:
        return {
            "access": self.access,
            "permission_groups": [{"id": group_id} for group_id in self.permission_group_ids],
            "resource_groups": [{"id": group_id} for group_id in self.resource_group_ids],
        }

    def as_policy(self) -> Policy:
        return Policy(
            access=self.access,
            permission_groups=[GroupRef(id=group_id) for group_id in self.permission_group_ids],
            resource_groups=[GroupRef(id=group_id) for group_id in self.resource_group_ids],
        )


class Member(_Model):
    id: str
    status: str = "unknown"
    email: str | None = None
    user: MemberUser = Field(default_factory=MemberUser)
    roles: list[Role] = Field(default_factory=list)
    policies: list[Policy] = Field(default_factory=list)

    @field_validator("roles", "policies", mode="before")
    @classmethod
    def _lists_may_be_null(cls, value: Any) -> Any:
        return value or []

    @field_validator("user", mode="before")
    @classmethod
    def _user_may_be_null(cls, value: Any) -> Any:
        return value or {}

    @field_validator("status", mode="before")
    @classmethod
    def _status_may_be_null(cls, value: Any) -> Any:
        return value or "unknown"

    @property
    def contact_email(self) -> str:
        return (self.user.email or self.email or "").lower()

    @property
    def role_ids(self) -> frozenset[str]:
        return frozenset(role.id for role in self.roles)

    @property
    def accepted(self) -> bool:
        return self.status == "accepted"


class TokenStatus(_Model):
    id: str
    status: str


class ApiMessage(_Model):
    code: int | None = None
    message: str = ""


class Envelope(_Model):
    """The v4 envelope. Some failures omit `messages`/`result` or send `result: []`: all tolerated."""

    success: bool
    errors: list[ApiMessage] = Field(default_factory=list)
    messages: list[ApiMessage] = Field(default_factory=list)
    result: Any = None
    result_info: dict[str, Any] | None = None

    @field_validator("errors", "messages", mode="before")
    @classmethod
    def _null_lists(cls, value: Any) -> Any:
        return value or []
