"""Settings read from the environment (and `.env`), with the names and defaults of SPEC §3."""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from dotenv import dotenv_values
from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from sqlalchemy import inspect
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError

from bot.core.durations import parse_duration
from storage.db import Database, normalise_url

CommaList = Annotated[list[str], NoDecode]

ENV_FILE = ".env"
PLACEHOLDER = "still has the placeholder value from .env.example"
# Settings only some commands need: a placeholder there counts as unset until a command requires it
# (a `socket` deployment keeps the example SLACK_SIGNING_SECRET line and never uses it).
_PER_COMMAND = ("slack_signing_secret", "slack_app_token")
_URL_EXAMPLE = "sqlite:///path/to/cf-access-bot.db or postgresql://user:password@host:5432/dbname"


class ConfigError(Exception):
    """A setting is missing or malformed; the message names the variable and is safe to print."""


def is_placeholder(value: Any) -> bool:
    """True for the example values of `.env.example` (they all contain `replace-me`) and `...` stubs."""
    if isinstance(value, list | tuple):
        return any(is_placeholder(item) for item in value)
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    if not isinstance(value, str):
        return False
    text = value.strip().lower()
    return "replace-me" in text or "replace_me" in text or text.endswith("...")


def _database_url(value: str) -> str:
    """Accept what hosts hand out (`postgres://`), refuse what SQLAlchemy cannot open, never echo it."""
    value = normalise_url(value.strip())
    try:
        url = make_url(value)
    except (ArgumentError, ValueError):
        raise ValueError(f"not a database URL (expected {_URL_EXAMPLE})") from None
    try:
        url.get_dialect()
    except NoSuchModuleError:
        raise ValueError(f"unknown database type '{url.drivername}' (expected {_URL_EXAMPLE})") from None
    return value


@dataclass(frozen=True)
class RateLimit:
    """`N/DURATION` (`1200/5m`): at most `calls` Cloudflare calls in any rolling `window`."""

    calls: int
    window: timedelta

    @classmethod
    def parse(cls, text: str) -> RateLimit:
        calls, _, window = text.strip().partition("/")
        try:
            if not calls.strip().isdigit() or int(calls) < 1:
                raise ValueError(calls)
            return cls(int(calls), parse_duration(window))
        except ValueError:
            raise ValueError(f"'{text}' is not a rate limit; write calls per duration: 1200/5m or 40/10s") from None

    def __str__(self) -> str:
        return f"{self.calls}/{int(self.window.total_seconds())}s"


class _Env(BaseSettings):
    """What every settings class shares: the `.env` file and refusing `.env.example` placeholders."""

    model_config = SettingsConfigDict(env_file=ENV_FILE, extra="ignore", case_sensitive=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_placeholder(cls, value: Any, info: ValidationInfo) -> Any:
        if info.field_name not in _PER_COMMAND and is_placeholder(value):
            raise PydanticCustomError("placeholder", PLACEHOLDER)
        return value


def _split_commas(value: Any) -> Any:
    if value is None:
        return []
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


class Settings(_Env):
    slack_bot_token: SecretStr
    slack_signing_secret: SecretStr | None = None
    slack_app_token: SecretStr | None = None
    slack_api_url: str = "https://slack.com/api/"

    cloudflare_api_token: SecretStr | None = None
    cloudflare_api_email: str | None = None
    cloudflare_api_key: SecretStr | None = None
    cloudflare_api_url: str = "https://api.cloudflare.com/client/v4"
    cloudflare_account_ids: CommaList = Field(default_factory=list)
    # Per account: `auto` uses permission policies where `.../iam/permission_groups` answers, else roles.
    cloudflare_access_model: Literal["auto", "policies", "roles"] = "auto"
    cloudflare_timeout: float = Field(default=10.0, gt=0)
    invite_max_attempts: int = Field(default=5, ge=1, le=50)
    # After a crash, another process takes an unfinished invite over within this; the live holder
    # renews its lease every INVITE_LEASE/6, so a slow call never lets another process in.
    invite_lease: timedelta = Field(default=timedelta(seconds=30), ge=timedelta(seconds=1))

    database_url: str = "sqlite:///cf-access-bot.db"
    host: str = "0.0.0.0"
    port: int = Field(default=3000, ge=0, le=65535)

    approval_channel: str | None = None
    fallback_approvers: CommaList = Field(default_factory=list)
    allowed_email_domains: CommaList = Field(default_factory=list)
    requestable_roles: CommaList = Field(default_factory=list)
    allow_guests: bool = False

    # Time-bound access (unset DEFAULT: permanent unless MAX is set; with MAX set nothing is permanent).
    default_access_duration: timedelta | None = None
    max_access_duration: timedelta | None = None
    access_end_warning: timedelta = Field(default=timedelta(hours=24))
    offboard_deactivated: bool = True
    offboarding_check_interval: timedelta = Field(default=timedelta(hours=24))

    approval_reminder_after: timedelta = Field(default=timedelta(hours=4))
    request_expires_after: timedelta = Field(default=timedelta(days=7))
    invite_reminder_after: timedelta = Field(default=timedelta(hours=24))
    invite_expires_after: timedelta = Field(default=timedelta(days=7))
    scheduler_interval: timedelta = Field(default=timedelta(minutes=5))
    directory_cache_ttl: timedelta = Field(default=timedelta(minutes=1))
    # Seconds to gather changes before republishing Home tabs (0: at once).
    home_refresh_delay: float = Field(default=2.0, ge=0, le=60)
    # Seconds an approval's redraw of the thread roots waits for its invite's outcome, which redraws
    # them once for both (0: each change redraws at once). Slack allows chat.update ~50 times a minute.
    root_refresh_delay: float = Field(default=2.0, ge=0, le=10)
    # Access-review digest: posted to this channel every REPORT_INTERVAL (unset: no digest).
    report_channel: str | None = None
    report_interval: timedelta = Field(default=timedelta(days=7), gt=timedelta(0))
    # Cloudflare calls the whole process allows itself per rolling window (one shared budget).
    cloudflare_rate_limit: Annotated[RateLimit, NoDecode] = RateLimit(1200, timedelta(minutes=5))

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
        "default_access_duration",
        "max_access_duration",
        "access_end_warning",
        "offboarding_check_interval",
        "report_interval",
        mode="before",
    )
    @classmethod
    def _duration(cls, value: Any) -> Any:
        if isinstance(value, str) and not value.strip():
            return None  # an empty optional duration (DEFAULT_ACCESS_DURATION=) means unset
        return parse_duration(value) if isinstance(value, str) else value

    @field_validator("cloudflare_rate_limit", mode="before")
    @classmethod
    def _rate_limit(cls, value: Any) -> Any:
        return RateLimit.parse(value) if isinstance(value, str) else value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @field_validator("log_format", "cloudflare_access_model", mode="before")
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

    @field_validator("slack_app_token")
    @classmethod
    def _app_token_shape(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not is_placeholder(value) and not value.get_secret_value().startswith("xapp-"):
            raise ValueError("must be an app-level token starting with xapp- (Basic Information > App-Level Tokens)")
        return value

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str) -> str:
        return _database_url(value)

    @model_validator(mode="after")
    def _cloudflare_credentials(self) -> Settings:
        has_token = self.cloudflare_api_token is not None
        has_key = self.cloudflare_api_email is not None and self.cloudflare_api_key is not None
        if not has_token and not has_key:
            raise ValueError(
                "CLOUDFLARE_API_TOKEN is required (or CLOUDFLARE_API_EMAIL together with CLOUDFLARE_API_KEY)"
            )
        return self

    @model_validator(mode="after")
    def _durations_fit(self) -> Settings:
        default, longest = self.default_access_duration, self.max_access_duration
        if default and longest and default > longest:
            raise ValueError("DEFAULT_ACCESS_DURATION is longer than MAX_ACCESS_DURATION")
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
    if first.get("type") == "placeholder":
        return f"{variable} {PLACEHOLDER}"
    return f"{variable}: {message}"


def load_settings(*, require: tuple[str, ...] = (), **overrides: Any) -> Settings:
    """Read settings, or raise ConfigError naming the first bad variable (never its value)."""
    try:
        settings = Settings(**overrides)
    except ValidationError as error:
        raise ConfigError(_describe(error)) from None
    unset: dict[str, Any] = {}
    for field in _PER_COMMAND:
        if is_placeholder(getattr(settings, field)):
            if field in require:
                raise ConfigError(f"{field.upper()} {PLACEHOLDER}")
            unset[field] = None
    if unset:
        settings = settings.model_copy(update=unset)
    for field in require:
        if getattr(settings, field) is None:
            raise ConfigError(f"{field.upper()} is required for this command")
    return settings


class DatabaseSettings(_Env):
    """What the offline commands (`requests`, `audit`, `db upgrade`) need: only the database."""

    database_url: str = "sqlite:///cf-access-bot.db"
    log_level: str = "INFO"
    log_format: Literal["text", "json"] = "text"

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str) -> str:
        return _database_url(value)


def load_database_settings() -> DatabaseSettings:
    try:
        return DatabaseSettings()
    except ValidationError as error:
        raise ConfigError(_describe(error)) from None


_KNOWN = sorted({name.upper() for model in (Settings, DatabaseSettings) for name in model.model_fields})
_PREFIXES = tuple(sorted({name.split("_")[0] + "_" for name in _KNOWN if "_" in name}))


def misspelled_variables(environ: Mapping[str, str] | None = None, env_file: str | Path = ENV_FILE) -> list[str]:
    """Warnings for names that look like one of ours but are not: extra="ignore" would drop them silently,
    so `APPROVAL_CHANEL=C1` would quietly mean "DM each approver". Names only, never values."""
    environ = os.environ if environ is None else environ
    path = Path(env_file)
    from_file = list(dotenv_values(path)) if path.is_file() else []
    warnings: list[str] = []
    seen: set[str] = set()
    for name, origin in [*((n, "the environment") for n in environ), *((n, str(path)) for n in from_file)]:
        upper = name.upper()
        if upper in _KNOWN or upper in seen:
            continue
        # Short unrelated names (PORTS, HOSTS) sit too close to PORT and HOST to guess from.
        if not upper.startswith(_PREFIXES) and len(upper) < 8:
            continue
        match = difflib.get_close_matches(upper, _KNOWN, n=1, cutoff=0.85)
        if match:
            seen.add(upper)
            warnings.append(f"{name} (in {origin}) is not a cf-access-bot setting; did you mean {match[0]}?")
    return warnings


def _where(url: URL) -> str:
    if url.get_backend_name() == "sqlite":
        return f"the SQLite database {Path(url.database).resolve() if url.database else ':memory:'}"
    return url.render_as_string(hide_password=True)


def database_problem(error: BaseException, url: str | None, *, opening: bool = False) -> ConfigError | None:
    """The one-line DATABASE_URL message for a failure to reach the database, or None if `error`
    is something else (a bug, which keeps its traceback). The password never appears.
    `opening`: raised while creating the engine, where a bad argument or a missing driver is ours too."""
    if isinstance(error, OperationalError):
        reason = str(error.orig)
    elif isinstance(error, ArgumentError | ImportError) and opening:
        reason = str(error)
    else:
        return None
    reason = " ".join(reason.split())
    parsed = None
    if url is not None:
        try:
            parsed = make_url(normalise_url(url))
        except (ArgumentError, ValueError):
            parsed = None
    if parsed is not None and parsed.password:
        reason = reason.replace(str(parsed.password), "***")
    if isinstance(error, ImportError):
        driver = parsed.drivername if parsed is not None else "database"
        hint = "; pip install 'cf-access-bot[postgres]'" if driver.startswith("postgresql") else ""
        return ConfigError(f"DATABASE_URL: the {driver} driver is not installed ({reason}){hint}")
    if parsed is None:
        return ConfigError(f"DATABASE_URL: cannot open the database: {reason}")
    return ConfigError(f"DATABASE_URL: cannot open {_where(parsed)}: {reason}")


def open_database(url: str, *, must_exist: bool = False) -> Database:
    """Connect once, up front, so a wrong DATABASE_URL stops the command with one line naming it
    rather than a traceback at the first query. `must_exist`: for commands that only read, which
    must neither create an empty database (a typo in a path would "work" and list nothing) nor
    run against one that has no schema yet."""
    url = normalise_url(url)
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        raise ConfigError(f"DATABASE_URL: not a database URL (expected {_URL_EXAMPLE})") from None
    if parsed.get_backend_name() == "sqlite" and parsed.database and parsed.database != ":memory:":
        file = Path(parsed.database)
        if not parsed.database.startswith("file:"):
            if must_exist and not file.exists():
                raise ConfigError(
                    f"DATABASE_URL: no database at {file.resolve()} (check the path, or run cf-access-bot db upgrade to create it)"
                )
            if not file.parent.is_dir():
                raise ConfigError(
                    f"DATABASE_URL: cannot create {_where(parsed)}: directory {file.parent.resolve()} does not exist"
                )
    try:
        database = Database.from_url(url)
        with database.engine.connect() as connection:
            tables: Iterable[str] = inspect(connection).get_table_names() if must_exist else ()
    except Exception as error:
        problem = database_problem(error, url, opening=True)
        if problem is None:
            raise
        raise problem from None
    if must_exist and "access_requests" not in tables:
        database.engine.dispose()
        raise ConfigError(
            f"DATABASE_URL: {_where(parsed)} has no cf-access-bot schema yet; run cf-access-bot db upgrade"
        )
    return database
