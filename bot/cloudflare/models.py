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


class GroupRef(_Model):
    """A permission group or resource group as a member's policy carries it (expanded, `meta` free-form)."""

    id: str = ""
    name: str = ""
    meta: dict[str, Any] = Field(default_factory=dict)
    scope: Any = None

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

    def scope_keys(self) -> set[str]:
        scopes = self.scope if isinstance(self.scope, list) else [self.scope]
        return {str(scope["key"]) for scope in scopes if isinstance(scope, dict) and scope.get("key")}


class Policy(_Model):
    id: str | None = None
    access: str = "allow"
    permission_groups: list[GroupRef] = Field(default_factory=list)
    resource_groups: list[GroupRef] = Field(default_factory=list)

    @field_validator("permission_groups", "resource_groups", mode="before")
    @classmethod
    def _lists_may_be_null(cls, value: Any) -> Any:
        return value or []


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
