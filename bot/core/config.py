"""Settings read from the environment (and `.env`), with the names and defaults of SPEC §3."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from bot.core.durations import parse_duration

CommaList = Annotated[list[str], NoDecode]


class ConfigError(Exception):
    """A setting is missing or malformed; the message names the variable and is safe to print."""


def _split_commas(value: Any) -> Any:
    if value is None:
        return []
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", case_sensitive=False)

    slack_bot_token: SecretStr
    slack_signing_secret: SecretStr | None = None
    slack_app_token: SecretStr | None = None
    slack_api_url: str = "https://slack.com/api/"

    cloudflare_api_token: SecretStr | None = None
    cloudflare_api_email: str | None = None
    cloudflare_api_key: SecretStr | None = None
    cloudflare_api_url: str = "https://api.cloudflare.com/client/v4"
    cloudflare_account_ids: CommaList = Field(default_factory=list)
    cloudflare_timeout: float = Field(default=10.0, gt=0)
    invite_max_attempts: int = Field(default=5, ge=1, le=50)
    # How long a worker holds an invite before another process may take it over (after a crash).
    invite_lease: timedelta = Field(default=timedelta(minutes=2))

    database_url: str = "sqlite:///cf-access-bot.db"
    host: str = "0.0.0.0"
    port: int = Field(default=3000, ge=0, le=65535)

    approval_channel: str | None = None
    fallback_approvers: CommaList = Field(default_factory=list)
    allowed_email_domains: CommaList = Field(default_factory=list)
    requestable_roles: CommaList = Field(default_factory=list)

    approval_reminder_after: timedelta = Field(default=timedelta(hours=4))
    request_expires_after: timedelta = Field(default=timedelta(days=7))
    invite_reminder_after: timedelta = Field(default=timedelta(hours=24))
    invite_expires_after: timedelta = Field(default=timedelta(days=7))
    scheduler_interval: timedelta = Field(default=timedelta(minutes=5))
    directory_cache_ttl: timedelta = Field(default=timedelta(minutes=1))
    # Seconds to gather changes before republishing Home tabs (0: at once).
    home_refresh_delay: float = Field(default=2.0, ge=0, le=60)

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    log_format: Literal["text", "json"] = "text"

    @field_validator(
        "cloudflare_account_ids",
        "fallback_approvers",
        "allowed_email_domains",
        "requestable_roles",
        mode="before",
    )
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        return _split_commas(value)

    @field_validator("allowed_email_domains")
    @classmethod
    def _lowercase_domains(cls, value: list[str]) -> list[str]:
        return [domain.lower().lstrip("@") for domain in value]

    @field_validator(
        "approval_reminder_after",
        "request_expires_after",
        "invite_reminder_after",
        "invite_expires_after",
        "scheduler_interval",
        "directory_cache_ttl",
        "invite_lease",
        mode="before",
    )
    @classmethod
    def _duration(cls, value: Any) -> Any:
        return parse_duration(value) if isinstance(value, str) else value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @field_validator("log_format", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value

    @field_validator("slack_api_url")
    @classmethod
    def _trailing_slash(cls, value: str) -> str:
        # slack_sdk joins method names with urljoin: without the slash the last path segment is lost.
        return value if value.endswith("/") else value + "/"

    @field_validator("cloudflare_api_url")
    @classmethod
    def _no_trailing_slash(cls, value: str) -> str:
        return value.rstrip("/")

    @field_validator("slack_bot_token")
    @classmethod
    def _bot_token_shape(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value().startswith("xoxb-"):
            raise ValueError("must be a bot token starting with xoxb-")
        return value

    @model_validator(mode="after")
    def _cloudflare_credentials(self) -> Settings:
        has_token = self.cloudflare_api_token is not None
        has_key = self.cloudflare_api_email is not None and self.cloudflare_api_key is not None
        if not has_token and not has_key:
            raise ValueError(
                "CLOUDFLARE_API_TOKEN is required (or CLOUDFLARE_API_EMAIL together with CLOUDFLARE_API_KEY)"
            )
        return self

    @property
    def approver_dm_mode(self) -> bool:
        return not self.approval_channel


_FIELD_TO_ENV = {name: name.upper() for name in Settings.model_fields}


def _describe(error: ValidationError) -> str:
    first = error.errors()[0]
    location = first.get("loc") or ()
    message = str(first.get("msg", "invalid value")).removeprefix("Value error, ")
    if not location:
        return message
    variable = _FIELD_TO_ENV.get(str(location[0]), str(location[0]).upper())
    if first.get("type") == "missing":
        return f"{variable} is required"
    return f"{variable}: {message}"


def load_settings(*, require: tuple[str, ...] = (), **overrides: Any) -> Settings:
    """Read settings, or raise ConfigError naming the first bad variable (never its value)."""
    try:
        settings = Settings(**overrides)
    except ValidationError as error:
        raise ConfigError(_describe(error)) from None
    for field in require:
        if getattr(settings, field) is None:
            raise ConfigError(f"{field.upper()} is required for this command")
    return settings


class DatabaseSettings(BaseSettings):
    """What the offline commands (`requests`, `audit`, `db upgrade`) need: only the database."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", case_sensitive=False)

    database_url: str = "sqlite:///cf-access-bot.db"
    log_level: str = "INFO"
    log_format: Literal["text", "json"] = "text"


def load_database_settings() -> DatabaseSettings:
    try:
        return DatabaseSettings()
    except ValidationError as error:
        raise ConfigError(_describe(error)) from None
