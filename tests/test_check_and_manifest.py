"""`cf-access-bot check` and the Slack app manifest."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from tests.conftest import World
from tests.fakes.cloudflare import FakeCloudflare, Fault
from tests.fakes.slack import FakeSlack
from tests.harness import BOT_TOKEN, CF_TOKEN, SIGNING_SECRET
from tests.process import bot_env
from tests.schemas import manifest_errors

ROOT = Path(__file__).resolve().parents[1]


def run_check(
    fake_slack: FakeSlack, fake_cf: FakeCloudflare, tmp_path: Path, **extra: str
) -> subprocess.CompletedProcess[str]:
    env = {**bot_env(fake_slack, fake_cf, f"sqlite:///{tmp_path}/check.db"), **extra}
    return subprocess.run(
        [sys.executable, "-m", "bot", "check"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )


def test_check_passes_and_prints_a_table(
    fake_slack: FakeSlack, fake_cf: FakeCloudflare, world: World, tmp_path: Path
) -> None:
    result = run_check(
        fake_slack, fake_cf, tmp_path, CLOUDFLARE_ACCOUNT_IDS=f"{world.acme},{world.staging}", LOG_LEVEL="DEBUG"
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Slack auth.test" in result.stdout and "API token is active" in result.stdout
    assert "approvers: Acme Production" in result.stdout and "bob@example.com" in result.stdout
    for secret in (BOT_TOKEN, CF_TOKEN, SIGNING_SECRET):
        assert secret not in result.stdout + result.stderr


def test_check_fails_on_an_account_without_approvers(
    fake_slack: FakeSlack, fake_cf: FakeCloudflare, world: World, tmp_path: Path
) -> None:
    result = run_check(fake_slack, fake_cf, tmp_path)
    assert result.returncode == 1
    line = next(line for line in result.stdout.splitlines() if line.startswith("approvers: Orange Cloud"))
    assert "FAILED" in line and "no Super Administrator found in Slack" in line


def test_check_fails_on_a_bad_token(
    fake_slack: FakeSlack, fake_cf: FakeCloudflare, world: World, tmp_path: Path
) -> None:
    result = run_check(fake_slack, fake_cf, tmp_path, CLOUDFLARE_API_TOKEN="wrong-token-value")
    assert result.returncode == 1
    assert "Cloudflare credentials" in result.stdout and "FAILED" in result.stdout
    assert "wrong-token-value" not in result.stdout + result.stderr


def test_manifests_validate_against_slacks_schema() -> None:
    for name in ("manifest.yml", "manifest.socket-mode.yml"):
        manifest = yaml.safe_load((ROOT / name).read_text())
        assert manifest_errors(manifest) == [], name
    manifest = yaml.safe_load((ROOT / "manifest.yml").read_text())
    scopes = set(manifest["oauth_config"]["scopes"]["bot"])
    assert {"commands", "chat:write", "im:write", "users:read", "users:read.email"} <= scopes
    assert manifest["features"]["slash_commands"][0]["command"] == "/cf-access"
    # Every event the bot listens to is subscribed; user_change drives offboarding.
    assert manifest["settings"]["event_subscriptions"]["bot_events"] == ["app_home_opened", "user_change"]
    urls = [
        manifest["features"]["slash_commands"][0]["url"],
        manifest["settings"]["interactivity"]["request_url"],
        # The zone search of the request form is an external select: Slack asks the options load URL.
        manifest["settings"]["interactivity"]["message_menu_options_url"],
        manifest["settings"]["event_subscriptions"]["request_url"],
    ]
    assert all(url.endswith("/slack/events") for url in urls)


def test_check_names_each_accounts_model_and_why_auto_fell_back_to_roles(
    fake_slack: FakeSlack, fake_cf: FakeCloudflare, world: World, tmp_path: Path
) -> None:
    """A token that may not read permission groups keeps an account on legacy roles under `auto`;
    `check` says so instead of leaving the operator to find out from the grants."""
    fake_cf.without_policies_api(world.staging)
    result = run_check(fake_slack, fake_cf, tmp_path, CLOUDFLARE_ACCOUNT_IDS=f"{world.acme},{world.staging}")
    lines = result.stdout.splitlines()
    [acme] = [line for line in lines if line.startswith("roles: Acme Production")]
    [staging] = [line for line in lines if line.startswith("roles: Acme Staging")]
    assert "policies:" in acme and "auto:" not in acme
    assert "roles (auto: the account's permission-groups API is not there (HTTP 404, code 7003))" in staging, staging

    refusal = {"success": False, "errors": [{"code": 9109, "message": "Unauthorized"}], "messages": [], "result": None}
    fake_cf.inject(Fault("GET", r"/iam/permission_groups$", status=403, body=refusal, times=9))
    result = run_check(fake_slack, fake_cf, tmp_path, CLOUDFLARE_ACCOUNT_IDS=world.acme)
    [acme] = [line for line in result.stdout.splitlines() if line.startswith("roles: Acme Production")]
    assert "roles (auto: the token may not read permission groups (HTTP 403, code 9109)" in acme, acme
