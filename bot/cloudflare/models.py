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


class Account(_Model):
    id: str
    name: str = ""
    type: str | None = None

    @field_validator("name", mode="before")
    @classmethod
    def _name_may_be_null(cls, value: Any) -> Any:
        return _null_is_empty(value)

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


class Member(_Model):
    id: str
    status: str = "unknown"
    email: str | None = None
    user: MemberUser = Field(default_factory=MemberUser)
    roles: list[Role] = Field(default_factory=list)

    @field_validator("roles", mode="before")
    @classmethod
    def _roles_may_be_null(cls, value: Any) -> Any:
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
