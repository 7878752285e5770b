"""Settings: SPEC §3 names and defaults; one clear message per bad variable; secrets never shown."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from bot.core.config import ConfigError, is_placeholder, load_database_settings, load_settings, misspelled_variables
from bot.core.durations import parse_duration

REQUIRED = {"SLACK_BOT_TOKEN": "xoxb-secret-bot-token-123", "CLOUDFLARE_API_TOKEN": "cf-secret-token-456"}
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.startswith(
            (
                "SLACK_",
                "CLOUDFLARE_",
                "APPROVAL_",
                "REQUEST",
                "INVITE_",
                "ALLOWED_",
                "FALLBACK_",
                "SCHEDULER_",
                "LOG_",
                "DATABASE_URL",
            )
        ):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)  # no stray .env


def test_defaults_match_the_spec(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in REQUIRED.items():
        monkeypatch.setenv(name, value)
    settings = load_settings()
    assert settings.slack_api_url == "https://slack.com/api/"
    assert settings.cloudflare_api_url == "https://api.cloudflare.com/client/v4"
    assert settings.database_url == "sqlite:///cf-access-bot.db"
    assert (settings.host, settings.port) == ("0.0.0.0", 3000)
    assert settings.approval_reminder_after == timedelta(hours=4)
    assert settings.request_expires_after == timedelta(days=7)
    assert settings.invite_reminder_after == timedelta(hours=24)
    assert settings.invite_expires_after == timedelta(days=7)
    assert settings.scheduler_interval == timedelta(minutes=5)
    assert (settings.log_level, settings.log_format) == ("INFO", "text")
    assert settings.approval_channel is None and settings.fallback_approvers == []


def test_lists_durations_and_env_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(
        "SLACK_BOT_TOKEN=xoxb-from-dotenv\nCLOUDFLARE_API_TOKEN=t\nALLOWED_EMAIL_DOMAINS=Example.com, corp.example.com\n"
        "REQUESTABLE_ROLES=Administrator,DNS\nAPPROVAL_REMINDER_AFTER=30s\nFALLBACK_APPROVERS=U1,U2\n"
    )
    settings = load_settings()
    assert settings.slack_bot_token.get_secret_value() == "xoxb-from-dotenv"
    assert settings.allowed_email_domains == ["example.com", "corp.example.com"]
    assert settings.requestable_roles == ["Administrator", "DNS"]
    assert settings.fallback_approvers == ["U1", "U2"]
    assert settings.approval_reminder_after == timedelta(seconds=30)


@pytest.mark.parametrize("text,expected", [("30s", 30), ("15m", 900), ("4h", 14400), ("7d", 604800)])
def test_durations(text: str, expected: int) -> None:
    assert parse_duration(text).total_seconds() == expected


@pytest.mark.parametrize(
    "env,variable",
    [
        ({"SLACK_BOT_TOKEN": None}, "SLACK_BOT_TOKEN"),
        ({"SLACK_BOT_TOKEN": "xoxp-user-token"}, "SLACK_BOT_TOKEN"),
        ({"CLOUDFLARE_API_TOKEN": None}, "CLOUDFLARE_API_TOKEN"),
        ({"APPROVAL_REMINDER_AFTER": "4 hours"}, "APPROVAL_REMINDER_AFTER"),
        ({"REQUEST_EXPIRES_AFTER": "0d"}, "REQUEST_EXPIRES_AFTER"),
        ({"PORT": "http"}, "PORT"),
        ({"LOG_FORMAT": "xml"}, "LOG_FORMAT"),
        ({"CLOUDFLARE_ACCESS_MODEL": "both"}, "CLOUDFLARE_ACCESS_MODEL"),
    ],
)
def test_bad_setting_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str | None], variable: str
) -> None:
    for name, value in {**REQUIRED, **env}.items():
        if value is not None:
            monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    message = str(caught.value)
    assert message.startswith(variable) or variable in message
    for secret in REQUIRED.values():
        assert secret not in message


def test_the_access_model_is_auto_unless_chosen(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in REQUIRED.items():
        monkeypatch.setenv(name, value)
    assert load_settings().cloudflare_access_model == "auto"
    monkeypatch.setenv("CLOUDFLARE_ACCESS_MODEL", "Policies")
    assert load_settings().cloudflare_access_model == "policies"


def test_email_and_key_is_an_alternative_to_a_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-1")
    monkeypatch.setenv("CLOUDFLARE_API_EMAIL", "owner@example.com")
    monkeypatch.setenv("CLOUDFLARE_API_KEY", "global-key-123456")
    settings = load_settings()
    assert settings.cloudflare_api_token is None
    assert "global-key-123456" not in repr(settings)


def test_serve_refuses_to_start_with_one_clear_line(tmp_path: Path) -> None:
    env = {
        "PATH": os.environ["PATH"],
        "SLACK_BOT_TOKEN": "xoxb-super-secret-value",
        "CLOUDFLARE_API_TOKEN": "tok-secret-9",
    }
    result = subprocess.run(
        [sys.executable, "-m", "bot", "serve"],
        cwd=tmp_path,
        env={**env, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert (
        result.stderr.strip() == "cf-access-bot: configuration error: SLACK_SIGNING_SECRET is required for this command"
    )
    assert "xoxb-super-secret-value" not in result.stderr + result.stdout


@pytest.mark.parametrize("scheme", ["postgres", "postgresql", "postgresql+psycopg"])
def test_postgres_urls_mean_the_driver_we_ship(monkeypatch: pytest.MonkeyPatch, scheme: str) -> None:
    for name, value in REQUIRED.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("DATABASE_URL", f"{scheme}://bot:pw@db.internal:5432/cf")
    assert load_settings().database_url == "postgresql+psycopg://bot:pw@db.internal:5432/cf"
    assert load_database_settings().database_url == "postgresql+psycopg://bot:pw@db.internal:5432/cf"


@pytest.mark.parametrize(
    "url", ["notaurl", "mongodb://bot:hunter2-secret@h/db", "postgresql://bot:hunter2-secret@h:port/db"]
)
def test_a_database_url_that_cannot_work_names_the_variable(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    for name, value in REQUIRED.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("DATABASE_URL", url)
    for load in (load_settings, load_database_settings):
        with pytest.raises(ConfigError) as caught:
            load()
        message = str(caught.value)
        assert message.startswith("DATABASE_URL: ") and "\n" not in message
        assert "hunter2-secret" not in message and url not in message


def test_env_example_placeholders_are_recognisable() -> None:
    """Every credential line of .env.example, commented or not, carries a value `is_placeholder` refuses."""
    lines = (ROOT / ".env.example").read_text().splitlines()
    assignments = [line.lstrip("# ").split("=", 1) for line in lines if "=" in line]
    secrets = {name: value for name, value in assignments if name.endswith(("_TOKEN", "_SECRET", "_KEY"))}
    assert {"SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET", "SLACK_APP_TOKEN", "CLOUDFLARE_API_TOKEN"} <= set(secrets)
    assert all(is_placeholder(value) for value in secrets.values())
    assert not is_placeholder("xoxb-1234-5678-abcdef") and not is_placeholder("sqlite:///cf-access-bot.db")


def test_a_copied_env_example_is_refused_naming_the_variable(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text((ROOT / ".env.example").read_text())
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert str(caught.value) == "SLACK_BOT_TOKEN still has the placeholder value from .env.example"


@pytest.mark.parametrize(
    "variable,value",
    [
        ("SLACK_BOT_TOKEN", "xoxb-replace-me"),
        ("CLOUDFLARE_API_TOKEN", "replace-me"),
        ("CLOUDFLARE_API_TOKEN", "..."),
        ("CLOUDFLARE_ACCOUNT_IDS", "replace-me"),
        ("APPROVAL_CHANNEL", "replace-me"),
    ],
)
def test_placeholder_values_stop_every_command(monkeypatch: pytest.MonkeyPatch, variable: str, value: str) -> None:
    for name, real in REQUIRED.items():
        monkeypatch.setenv(name, real)
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert str(caught.value) == f"{variable} still has the placeholder value from .env.example"


def test_per_command_placeholders_stop_only_the_command_that_needs_them(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in REQUIRED.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("SLACK_SIGNING_SECRET", "replace-me")
    monkeypatch.setenv("SLACK_APP_TOKEN", "xapp-replace-me")
    assert load_settings().slack_signing_secret is None, "socket and check do not use it: treated as unset"
    for field in ("slack_signing_secret", "slack_app_token"):
        with pytest.raises(ConfigError) as caught:
            load_settings(require=(field,))
        assert str(caught.value) == f"{field.upper()} still has the placeholder value from .env.example"


def test_app_token_must_be_an_app_level_token(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in REQUIRED.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("SLACK_APP_TOKEN", "xoxb-pasted-the-bot-token-by-mistake")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert str(caught.value).startswith("SLACK_APP_TOKEN: must be an app-level token starting with xapp-")
    assert "pasted-the-bot-token" not in str(caught.value)
    monkeypatch.setenv("SLACK_APP_TOKEN", "xapp-1-A0-1-abc")
    assert load_settings(require=("slack_app_token",)).slack_app_token is not None


def test_misspelled_variables_are_named_with_the_likely_intended_one(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("CLOUDFLARE_ACOUNT_IDS=dotenv-value-123\nSLACK_BOT_TOKEN=xoxb-1\n")
    environ = {
        "APPROVAL_CHANEL": "env-value-456",
        "slack_bot_tokn": "xoxb-env-value-789",
        "SLACK_BOT_TOKEN": "xoxb-1",
        **dict.fromkeys(
            ["PATH", "HOME", "PYTHONPATH", "HOSTNAME", "PORTS", "TEST_DATABASE_URL", "SLACK_CLIENT_ID"], "x"
        ),
    }
    warnings = misspelled_variables(environ)
    assert warnings == [
        "APPROVAL_CHANEL (in the environment) is not a cf-access-bot setting; did you mean APPROVAL_CHANNEL?",
        "slack_bot_tokn (in the environment) is not a cf-access-bot setting; did you mean SLACK_BOT_TOKEN?",
        "CLOUDFLARE_ACOUNT_IDS (in .env) is not a cf-access-bot setting; did you mean CLOUDFLARE_ACCOUNT_IDS?",
    ]
    assert not any(value in " ".join(warnings) for value in ("dotenv-value-123", "env-value-456", "env-value-789"))
