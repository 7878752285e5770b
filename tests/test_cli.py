"""`cf-access-bot requests` and `cf-access-bot audit`, parsed as a script or a spreadsheet would."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

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
