"""Structured logs without secrets, and the same listeners over Socket Mode."""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

import pytest
from slack_bolt.request import BoltRequest

from bot.core.executor import TrackedExecutor
from bot.ops.app import build_bolt_app
from bot.ops.logs import RedactSecrets
from bot.ops.wiring import build_services
from tests.conftest import ALICE, BOB, World
from tests.fakes.cloudflare import FakeCloudflare
from tests.fakes.slack import FakeSlack
from tests.harness import BOT_TOKEN, CF_TOKEN, SIGNING_SECRET, BotUnderTest, bot_settings
from tests.helpers import roots_of
from tests.process import BotProcess, bot_env
from tests.test_replicas import request_status, wait_for

SECRETS = (BOT_TOKEN, CF_TOKEN, SIGNING_SECRET)
ROOT = Path(__file__).resolve().parents[1]


def run_flow_in_process(fake_slack: FakeSlack, database_url: str, log_path: Path, env: dict[str, str]) -> str:
    with BotProcess(env, log_path).start() as bot:
        bot.attach(fake_slack)
        bot.command('request "Acme Production" DNS logging check', user_id=ALICE)
        wait_for(lambda: len(roots_of(fake_slack, 1)) == 2, what="the request")
        bot.click(roots_of(fake_slack, 1)[0], "request_approve", user_id=BOB)
        wait_for(lambda: request_status(database_url, 1) == "invited", what="the invite")
        bot.command("help", user_id=ALICE, secret="wrong-secret")  # a refused request is logged too
    time.sleep(0.2)
    return log_path.read_text()


def test_json_logs_one_object_per_line_without_secrets(
    fake_slack: FakeSlack, fake_cf: FakeCloudflare, world: World, database_url: str, tmp_path: Path
) -> None:
    env = bot_env(fake_slack, fake_cf, database_url, LOG_FORMAT="json", LOG_LEVEL="DEBUG")
    output = run_flow_in_process(fake_slack, database_url, tmp_path / "json.log", env)
    lines = [json.loads(line) for line in output.splitlines() if line.strip()]
    assert lines, "the process logged nothing"
    assert all({"time", "level", "event"} <= set(line) for line in lines)
    audit = {line["event"]: line for line in lines if line.get("logger") == "cf_access_bot.audit"}
    assert {"requested", "approved", "invite_sent"} <= set(audit)
    assert audit["approved"]["request_id"] == 1 and audit["approved"]["actor_slack_id"] == BOB
    assert audit["approved"]["actor_email"] == "bob@example.com"
    for secret in SECRETS:
        assert secret not in output


def test_text_logs_are_readable_and_without_secrets(
    fake_slack: FakeSlack, fake_cf: FakeCloudflare, world: World, database_url: str, tmp_path: Path
) -> None:
    env = bot_env(fake_slack, fake_cf, database_url, LOG_LEVEL="DEBUG")
    output = run_flow_in_process(fake_slack, database_url, tmp_path / "text.log", env)
    approved = next(line for line in output.splitlines() if "cf_access_bot.audit: approved" in line)
    assert "request_id=1" in approved and f'actor_slack_id="{BOB}"' in approved
    for secret in SECRETS:
        assert secret not in output


def test_socket_mode_serves_the_same_listeners(
    bot: BotUnderTest, fake_slack: FakeSlack, fake_cf: FakeCloudflare, world: World, database_url: str
) -> None:
    settings = bot_settings(
        fake_slack, fake_cf, database_url, slack_signing_secret=None, slack_app_token="xapp-1-test-app-token"
    )
    services = build_services(settings)
    try:
        socket_app = build_bolt_app(services, socket_mode=True)

        def names(app: object) -> list[str]:
            return sorted(listener.ack_function.__name__ for listener in app._listeners)  # type: ignore[attr-defined]

        assert names(socket_app) == names(bot.runtime.bolt_app)
        assert "on_command" in names(socket_app) and "on_approve" in names(socket_app)
        command = {
            "command": "/cf-access",
            "text": "help",
            "user_id": ALICE,
            "channel_id": "C0OPS00001",
            "team_id": "T0TEAM0001",
            "trigger_id": "1.2.3",
            "response_url": fake_slack.url + "/response/s",
        }
        # Socket Mode envelopes arrive as dicts, unsigned: no signing secret is needed.
        response = socket_app.dispatch(BoltRequest(body=command, mode="socket_mode"))
        assert response.status == 200 and "/cf-access request" in response.body
    finally:
        services.close()


def test_socket_command_needs_an_app_token(tmp_path: Path) -> None:
    env = {
        "PATH": os.environ["PATH"],
        "PYTHONPATH": str(ROOT),
        "SLACK_BOT_TOKEN": BOT_TOKEN,
        "CLOUDFLARE_API_TOKEN": CF_TOKEN,
    }
    result = subprocess.run(
        [sys.executable, "-m", "bot", "socket"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert "SLACK_APP_TOKEN is required" in result.stderr


def test_debug_logs_do_not_show_response_urls(
    fake_slack: FakeSlack, fake_cf: FakeCloudflare, world: World, database_url: str, tmp_path: Path
) -> None:
    """A response_url lets anyone post into the conversation for 30 minutes; Bolt and slack_sdk log
    request bodies and webhook URLs at DEBUG, so the log filter masks them."""
    log_path = tmp_path / "debug.log"
    env = bot_env(fake_slack, fake_cf, database_url, LOG_LEVEL="DEBUG")
    with BotProcess(env, log_path).start() as bot:
        bot.attach(fake_slack)
        reply = bot.command('request "Acme Production" DNS response url check', user_id=ALICE)
        wait_for(lambda: bool(fake_slack.responses_for(reply.response_id)), what="the reply on the response_url")
        wait_for(lambda: len(roots_of(fake_slack, 1)) == 2, what="the request")
        bot.click(roots_of(fake_slack, 1)[0], "request_approve", user_id=BOB)
        wait_for(lambda: request_status(database_url, 1) == "invited", what="the invite")
        clicked = bot.last_response_id
    time.sleep(0.2)
    output = log_path.read_text()
    assert "slack_sdk.webhook.client: Sending a request - url: ***" in output, "DEBUG logging was on"
    for response_id in (reply.response_id, clicked):
        assert f"{fake_slack.url}/response/{response_id}" not in output
        assert f"/response/{response_id}" not in output
        assert quote(f"{fake_slack.url}/response/{response_id}", safe="") not in output


def test_log_filter_masks_response_urls_in_every_shape() -> None:
    hooks = "https://hooks.slack.com/commands/T0TEAM0001/1234567890/AbCdEf0123456789"
    filter_ = RedactSecrets([])
    shapes = [
        f"Sending a request - url: {hooks}, body: {{}}",
        f"body: {{'response_url': '{hooks}', 'text': 'hi'}}",
        f'{{"response_url": "{hooks}", "text": "hi"}}',
        f'{{"response_urls": [{{"block_id": "b", "response_url": "{hooks}"}}]}}',
        "command=%2Fcf-access&response_url=" + quote(hooks, safe="") + "&trigger_id=1",
        "payload=" + quote(json.dumps({"response_url": hooks}), safe=""),
        '{"response_url": "http://127.0.0.1:9/response/r-1"}',
    ]
    for shape in shapes:
        record = logging.makeLogRecord({"msg": "%s", "args": (shape,), "name": "slack_bolt.App"})
        assert filter_.filter(record)
        masked = record.getMessage()
        assert "AbCdEf0123456789" not in masked and "r-1" not in masked, masked
        assert "1234567890" not in masked, masked
    webhook = logging.makeLogRecord(
        {
            "msg": "Sending a request - url: http://127.0.0.1:9/response/r-2, body: {}",
            "name": "slack_sdk.webhook.client",
        }
    )
    filter_.filter(webhook)
    assert "r-2" not in webhook.getMessage()
    plain = logging.makeLogRecord({"msg": "approved request #42 on https://dash.cloudflare.com/acc", "name": "x"})
    filter_.filter(plain)
    assert plain.getMessage() == "approved request #42 on https://dash.cloudflare.com/acc", "other URLs stay"


def test_unexpected_failure_in_pool_work_is_logged_with_a_reference(caplog: pytest.LogCaptureFixture) -> None:
    """Nobody waits on the pool's futures: an exception left in one used to vanish without a trace."""
    executor = TrackedExecutor(2)
    try:

        def broken_flush() -> None:
            raise RuntimeError("boom")

        future = executor.submit(broken_flush)
        assert executor.wait_idle(5)
        assert isinstance(future.exception(timeout=5), RuntimeError), "callers that wait still see it"
        assert executor.submit(lambda: 42).result(timeout=5) == 42
    finally:
        executor.shutdown(wait=True)
    failures = [record for record in caplog.records if record.levelno == logging.ERROR]
    assert len(failures) == 1
    assert re.fullmatch(r"background work .*broken_flush failed \(ref [0-9a-f]{8}\)", failures[0].getMessage())
    assert failures[0].exc_info is not None and "boom" in caplog.text


def test_a_failing_event_listener_job_is_logged_not_lost(
    bot: BotUnderTest, world: World, caplog: pytest.LogCaptureFixture
) -> None:
    body = json.dumps(
        {
            "type": "event_callback",
            "event_id": "Ev0NOUSER01",
            "team_id": "T0TEAM0001",
            "event": {"type": "app_home_opened", "tab": "home", "channel": "D0X", "event_ts": "1.2"},
            "authorizations": [{"team_id": "T0TEAM0001", "user_id": "U0CFBOT001", "is_bot": True}],
        }
    )
    assert bot.signed_post(body, "application/json").status_code == 200
    bot.wait_idle()
    assert re.search(r"_publish_home failed \(ref [0-9a-f]{8}\)", caplog.text)
    assert "KeyError: 'user'" in caplog.text


def test_the_slack_client_formats_its_debug_lines_only_when_debug_is_asked_for(fake_slack: FakeSlack) -> None:
    """slack_sdk builds a debug line of every request body (blocks included) whenever its client
    logger's own level is unset, and only then lets logging drop it."""
    from bot.ops.logs import configure_logging
    from bot.slack.gateway import make_web_client

    root = logging.getLogger()
    kept = root.handlers[:], root.level
    client_logger = logging.getLogger("slack_sdk.web.base_client")
    try:
        configure_logging(level="INFO", fmt="text", secrets=[])
        client = make_web_client(BOT_TOKEN, fake_slack.url + "/api/")
        assert client._logger is client_logger and client_logger.level > logging.DEBUG
        configure_logging(level="DEBUG", fmt="text", secrets=[])
        assert client_logger.level == logging.DEBUG, "LOG_LEVEL=DEBUG still shows the SDK's request lines"
    finally:
        root.handlers[:], _ = kept
        root.setLevel(kept[1])
        client_logger.setLevel(logging.NOTSET)
