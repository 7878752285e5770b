"""`cf-access-bot requests` and `cf-access-bot audit`, parsed as a script or a spreadsheet would."""

from __future__ import annotations

import csv
import io
import json
import os
import sqlite3
import subprocess
import sys
import tomllib
from datetime import timedelta
from pathlib import Path

import pytest

from tests.conftest import ALICE, BOB, World
from tests.fakes.slack import FakeSlack
from tests.harness import BotUnderTest
from tests.helpers import file_request, roots_of

ROOT = Path(__file__).resolve().parents[1]
AUDIT_KEYS = ["time", "request_id", "event", "actor_slack_id", "actor_email", "details"]


def cli(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(ROOT), "DATABASE_URL": database_url}
    return subprocess.run(
        [sys.executable, "-m", "bot", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )


def history(bot: BotUnderTest, fake_slack: FakeSlack) -> None:
    """#1 invited (filed at 09:00, approved at 10:00), #2 pending (filed at 10:00)."""
    file_request(bot, fake_slack, ALICE, 'request "Acme Production" DNS =HYPERLINK("http://evil") rotate')
    bot.clock.advance(timedelta(hours=1))
    bot.click(roots_of(fake_slack, 1)[0], "request_approve", user_id=BOB)
    file_request(bot, fake_slack, ALICE, 'request "Acme Staging" DNS staging')


def test_requests_table_and_json(bot: BotUnderTest, fake_slack: FakeSlack, world: World, database_url: str) -> None:
    history(bot, fake_slack)
    table = cli(database_url, "requests")
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split()[:3] == ["ID", "STATUS", "ACCOUNT"]
    assert lines[1].startswith("#1") and "invited" in lines[1] and "Acme Production" in lines[1]
    assert lines[2].startswith("#2") and "pending" in lines[2]
    records = [json.loads(line) for line in cli(database_url, "requests", "--json").stdout.splitlines()]
    assert [(r["id"], r["status"], r["roles"]) for r in records] == [(1, "invited", ["DNS"]), (2, "pending", ["DNS"])]
    pending = cli(database_url, "requests", "--status", "pending", "--json").stdout.splitlines()
    assert [json.loads(line)["id"] for line in pending] == [2]
    by_account = cli(database_url, "requests", "--account", world.staging, "--json").stdout.splitlines()
    assert [json.loads(line)["account"] for line in by_account] == ["Acme Staging"]
    wrong = cli(database_url, "requests", "--status", "maybe")
    assert wrong.returncode == 2 and "--status must be one of pending, approved" in wrong.stderr


def test_audit_json_lines_and_since(bot: BotUnderTest, fake_slack: FakeSlack, world: World, database_url: str) -> None:
    history(bot, fake_slack)
    result = cli(database_url, "audit", "--format", "json")
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert [e["event"] for e in events] == ["requested", "approved", "invite_sent", "requested"]
    assert all(list(e) == AUDIT_KEYS for e in events)
    assert events[0]["time"] == "2026-01-05T09:00:00Z" and events[0]["actor_slack_id"] == ALICE
    assert events[1]["actor_email"] == "bob@example.com" and events[1]["details"]["roles_granted"] == ["DNS"]
    since = cli(database_url, "audit", "--since", "2026-01-05T10:00:00Z").stdout.splitlines()
    assert [json.loads(line)["event"] for line in since] == ["approved", "invite_sent", "requested"], "inclusive"
    bad = cli(database_url, "audit", "--since", "yesterday")
    assert bad.returncode == 2 and "--since" in bad.stderr


def test_audit_csv_opens_cleanly(bot: BotUnderTest, fake_slack: FakeSlack, world: World, database_url: str) -> None:
    history(bot, fake_slack)
    result = cli(database_url, "audit", "--format", "csv")
    rows = list(csv.reader(io.StringIO(result.stdout)))
    assert rows[0] == AUDIT_KEYS
    assert [row[2] for row in rows[1:]] == ["requested", "approved", "invite_sent", "requested"]
    details = json.loads(rows[1][5])
    assert details["reason"].startswith('=HYPERLINK("http://evil")'), "details stay exact JSON text"
    assert all(not cell.startswith(("=", "+", "@")) for row in rows for cell in row), "no cell runs as a formula"


PASSWORD = "hunter2-db-secret"
SECRETS = ("xoxb-secret-bot-token-1", "cf-secret-token-2", "signing-secret-3", PASSWORD)


def run_bot(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """The console script with nothing in its environment but what the test gives it."""
    base = {"PATH": os.environ["PATH"], "PYTHONPATH": str(ROOT), "HOME": str(cwd)}
    return subprocess.run(
        [sys.executable, "-m", "bot", *args], cwd=cwd, env={**base, **env}, capture_output=True, text=True, timeout=60
    )


def one_config_error(result: subprocess.CompletedProcess[str], variable: str) -> str:
    """Exit 2 and exactly one stderr line naming `variable`: no traceback, no secret."""
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"cf-access-bot: configuration error: {variable}"), lines[0]
    assert "Traceback" not in result.stderr
    assert not any(secret in result.stderr + result.stdout for secret in SECRETS)
    return lines[0]


@pytest.mark.parametrize(
    "url,expected",
    [
        ("notaurl", "not a database URL"),
        (f"postgresql+psycopg://postgres:{PASSWORD}@127.0.0.1:1/x", "port 1"),
        (f"postgres://postgres:{PASSWORD}@127.0.0.1:5432/no_such_db_xyz", "127.0.0.1"),
        ("sqlite:////proc/nope/x.db", "/proc/nope"),
        ("sqlite:///{tmp}/no/such/dir/x.db", "/no/such/dir"),
    ],
)
@pytest.mark.parametrize("command", [["db", "upgrade"], ["audit"]])
def test_an_unusable_database_is_one_line_naming_database_url(
    tmp_path: Path, url: str, expected: str, command: list[str]
) -> None:
    line = one_config_error(run_bot(tmp_path, *command, DATABASE_URL=url.format(tmp=tmp_path)), "DATABASE_URL: ")
    assert expected in line
    assert list(tmp_path.iterdir()) == [], "nothing created"


@pytest.mark.parametrize("command", ["serve", "check", "socket"])
def test_the_bot_commands_report_an_unreachable_database_in_one_line(tmp_path: Path, command: str) -> None:
    env = {
        "SLACK_BOT_TOKEN": SECRETS[0],
        "CLOUDFLARE_API_TOKEN": SECRETS[1],
        "SLACK_SIGNING_SECRET": SECRETS[2],
        "SLACK_APP_TOKEN": "xapp-1-A0-1-abc",
        "SLACK_API_URL": "http://127.0.0.1:1/api/",
        "CLOUDFLARE_API_URL": "http://127.0.0.1:1/client/v4",
        "DATABASE_URL": f"postgres://postgres:{PASSWORD}@127.0.0.1:1/x",
    }
    line = one_config_error(run_bot(tmp_path, command, **env), "DATABASE_URL: ")
    assert "postgres:***@127.0.0.1:1/x" in line


def test_requests_and_audit_never_create_a_database(tmp_path: Path) -> None:
    missing = tmp_path / "typo.db"
    for command in ("requests", "audit"):
        line = one_config_error(run_bot(tmp_path, command, DATABASE_URL=f"sqlite:///{missing}"), "DATABASE_URL: ")
        assert str(missing) in line
        assert not missing.exists()
    sqlite3.connect(missing).close()  # an existing file with no tables
    for command in ("requests", "audit"):
        line = one_config_error(run_bot(tmp_path, command, DATABASE_URL=f"sqlite:///{missing}"), "DATABASE_URL: ")
        assert line.endswith("run cf-access-bot db upgrade")
    assert run_bot(tmp_path, "db", "upgrade", DATABASE_URL=f"sqlite:///{missing}").returncode == 0
    listed = run_bot(tmp_path, "requests", DATABASE_URL=f"sqlite:///{missing}")
    assert listed.returncode == 0 and listed.stderr == ""


def test_serve_refuses_the_placeholders_of_env_example(tmp_path: Path) -> None:
    example = (ROOT / ".env.example").read_text()
    (tmp_path / ".env").write_text(example)
    one_config_error(run_bot(tmp_path, "serve"), "SLACK_BOT_TOKEN still has the placeholder value from .env.example")
    filled = example.replace("SLACK_BOT_TOKEN=xoxb-replace-me", f"SLACK_BOT_TOKEN={SECRETS[0]}")
    (tmp_path / ".env").write_text(
        filled.replace("CLOUDFLARE_API_TOKEN=replace-me", f"CLOUDFLARE_API_TOKEN={SECRETS[1]}")
    )
    line = one_config_error(run_bot(tmp_path, "serve"), "SLACK_SIGNING_SECRET")
    assert line.endswith("SLACK_SIGNING_SECRET still has the placeholder value from .env.example")


def test_socket_refuses_a_token_that_is_not_an_app_token(tmp_path: Path) -> None:
    env = {"SLACK_BOT_TOKEN": SECRETS[0], "CLOUDFLARE_API_TOKEN": SECRETS[1], "SLACK_APP_TOKEN": SECRETS[0]}
    line = one_config_error(run_bot(tmp_path, "socket", **env), "SLACK_APP_TOKEN: ")
    assert "xapp-" in line


def test_a_misspelled_variable_is_warned_about_by_its_intended_name(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("CLOUDFLARE_ACOUNT_IDS=acct-value-1\n")
    result = run_bot(
        tmp_path, "db", "upgrade", APPROVAL_CHANEL="C0SECRETISH", DATABASE_URL=f"sqlite:///{tmp_path}/x.db"
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == [
        "cf-access-bot: warning: APPROVAL_CHANEL (in the environment) is not a cf-access-bot setting; did you mean APPROVAL_CHANNEL?",
        "cf-access-bot: warning: CLOUDFLARE_ACOUNT_IDS (in .env) is not a cf-access-bot setting; did you mean CLOUDFLARE_ACCOUNT_IDS?",
    ], "PATH, HOME and PYTHONPATH are not ours and pass silently"
    assert "C0SECRETISH" not in result.stderr and "acct-value-1" not in result.stderr


def test_version(tmp_path: Path) -> None:
    result = run_bot(tmp_path, "--version")
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert (result.returncode, result.stdout, result.stderr) == (0, f"cf-access-bot {version}\n", "")
