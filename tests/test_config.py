"""Settings: SPEC §3 names and defaults; one clear message per bad variable; secrets never shown."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from bot.core.config import ConfigError, load_settings
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
