"""Drives the real bot over HTTP on loopback, the way Slack does, against the fake APIs."""

from __future__ import annotations

import itertools
import json
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import httpx
import uvicorn
from slack_sdk.signature import SignatureVerifier

from bot.core.clock import FrozenClock
from bot.core.config import Settings, load_settings
from bot.ops.runtime import Runtime
from storage.db import Database
from tests.fakes.cloudflare import FakeCloudflare
from tests.fakes.slack import FakeSlack, Message

SIGNING_SECRET = "test-signing-secret-0123456789"
BOT_TOKEN = "xoxb-test-bot-token-0123456789"
CF_TOKEN = "cf-test-token-0123456789abcdef"
_trigger_ids = itertools.count(1)
_response_ids = itertools.count(1)


@dataclass
class RecordingSleep:
    """Stands in for time.sleep in the bot: records each wait instead of waiting."""

    waits: list[float] = field(default_factory=list)

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def bot_settings(slack: FakeSlack, cloudflare: FakeCloudflare, database_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "slack_bot_token": BOT_TOKEN,
        "slack_signing_secret": SIGNING_SECRET,
        "slack_api_url": slack.url + "/api/",
        "cloudflare_api_token": CF_TOKEN,
        "cloudflare_api_url": cloudflare.url + "/client/v4",
        "database_url": database_url,
        "cloudflare_timeout": 2.0,
        "home_refresh_delay": 0,
        "root_refresh_delay": 0,
    }
    values.update(overrides)
    return load_settings(_env_file=None, **values)


class SlackDriver:
    """Sends what Slack sends (signed commands, interactions, events) to a bot at `self.http`."""

    slack_url: str = ""
    last_response_id: str = ""
    http: httpx.Client
    fake_slack: FakeSlack | None = None

    def attach(self, fake_slack: FakeSlack) -> None:
        """Payloads point their response_url at `fake_slack` and carry trigger_ids it issued."""
        self.fake_slack = fake_slack
        self.slack_url = fake_slack.url

    def new_trigger(self) -> str:
        if self.fake_slack is not None:
            return self.fake_slack.issue_trigger()
        return f"{int(time.time())}.{next(_trigger_ids)}.abcdef"

    def wait_idle(self, timeout: float = 15.0) -> None:
        """Wait for the work the last request started; a no-op where that cannot be known."""

    def signed_post(
        self,
        body: str,
        content_type: str,
        *,
        timestamp: int | None = None,
        secret: str = SIGNING_SECRET,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        timestamp = int(time.time()) if timestamp is None else timestamp
        signature = SignatureVerifier(secret).generate_signature(timestamp=str(timestamp), body=body)
        sent_headers = {
            "Content-Type": content_type,
            "X-Slack-Request-Timestamp": str(timestamp),
            "X-Slack-Signature": signature,
            **(headers or {}),
        }
        return self.http.post("/slack/events", content=body.encode(), headers=sent_headers)

    def command(
        self, text: str, *, user_id: str, channel_id: str = "C0OPS00001", wait: bool = True, **signing: Any
    ) -> CommandReply:
        response_id = f"cmd-{next(_response_ids)}"
        form = {
            "token": "legacy-verification-token",
            "team_id": "T0TEAM0001",
            "team_domain": "acme",
            "channel_id": channel_id,
            "channel_name": "ops",
            "user_id": user_id,
            "user_name": user_id.lower(),
            "command": "/cf-access",
            "text": text,
            "api_app_id": "A0CFACCESS",
            "is_enterprise_install": "false",
            "response_url": f"{self.slack_url}/response/{response_id}",
            "trigger_id": self.new_trigger(),
        }
        response = self.signed_post(urlencode(form), "application/x-www-form-urlencoded", **signing)
        if wait:
            self.wait_idle()
        return CommandReply(response, response_id, form["trigger_id"])

    def interact(self, payload: dict[str, Any], *, wait: bool = True) -> httpx.Response:
        response = self.signed_post(urlencode({"payload": json.dumps(payload)}), "application/x-www-form-urlencoded")
        if wait:
            self.wait_idle()
        return response

    def click(
        self,
        message: Message,
        action_id: str,
        *,
        user_id: str,
        granted_role_ids: list[str] | None = None,
        granted_duration: str | None = None,
        wait: bool = True,
    ) -> httpx.Response:
        """A block_actions payload for a button on `message`, carrying the role and duration pickers' state
        (`granted_duration`: an option value of the duration select, e.g. "28800" or "permanent")."""
        action = next(
            element
            for block in message.blocks
            if block.get("type") == "actions"
            for element in block["elements"]
            if element.get("action_id") == action_id
        )
        block_id = next(
            b["block_id"] for b in message.blocks if any(e.get("action_id") == action_id for e in b.get("elements", []))
        )
        values: dict[str, Any] = {}
        for block in message.blocks:
            accessory = block.get("accessory") or {}
            if accessory.get("action_id") == "grant_roles":
                chosen = accessory.get("initial_options") or []
                if granted_role_ids is not None:
                    chosen = [o for o in accessory["options"] if o["value"] in granted_role_ids]
                values[block["block_id"]] = {"grant_roles": {"type": "multi_static_select", "selected_options": chosen}}
            if accessory.get("action_id") == "grant_duration":
                option = accessory.get("initial_option")
                if granted_duration is not None:
                    option = next(o for o in accessory["options"] if o["value"] == granted_duration)
                values[block["block_id"]] = {"grant_duration": {"type": "static_select", "selected_option": option}}
        response_id = f"act-{next(_response_ids)}"
        payload = {
            "type": "block_actions",
            "team": {"id": "T0TEAM0001", "domain": "acme"},
            "user": {"id": user_id, "username": user_id.lower(), "name": user_id.lower(), "team_id": "T0TEAM0001"},
            "api_app_id": "A0CFACCESS",
            "token": "legacy-verification-token",
            "trigger_id": self.new_trigger(),
            "container": {
                "type": "message",
                "message_ts": message.ts,
                "channel_id": message.channel,
                "is_ephemeral": False,
            },
            "channel": {"id": message.channel, "name": "cf-approvals"},
            "message": {"type": "message", "ts": message.ts, "text": message.text, "blocks": message.blocks},
            "state": {"values": values},
            "response_url": f"{self.slack_url}/response/{response_id}",
            "actions": [{**action, "block_id": block_id, "action_ts": f"{time.time():.6f}"}],
            "is_enterprise_install": False,
        }
        self.last_response_id = response_id
        return self.interact(payload, wait=wait)

    def submit_view(self, view: dict[str, Any], values: dict[str, Any], *, user_id: str) -> httpx.Response:
        payload = {
            "type": "view_submission",
            "team": {"id": "T0TEAM0001", "domain": "acme"},
            "user": {"id": user_id, "username": user_id.lower(), "name": user_id.lower(), "team_id": "T0TEAM0001"},
            "api_app_id": "A0CFACCESS",
            "token": "legacy-verification-token",
            "trigger_id": self.new_trigger(),
            "view": {**view, "state": {"values": values}},
            "response_urls": [],
            "is_enterprise_install": False,
        }
        return self.interact(payload)

    def view_action(self, view: dict[str, Any], action: dict[str, Any], *, user_id: str) -> httpx.Response:
        payload = {
            "type": "block_actions",
            "team": {"id": "T0TEAM0001", "domain": "acme"},
            "user": {"id": user_id, "username": user_id.lower(), "name": user_id.lower(), "team_id": "T0TEAM0001"},
            "api_app_id": "A0CFACCESS",
            "token": "legacy-verification-token",
            "trigger_id": self.new_trigger(),
            "container": {"type": "view", "view_id": view["id"]},
            "view": view,
            "actions": [action],
            "is_enterprise_install": False,
        }
        return self.interact(payload)


class BotUnderTest(SlackDriver):
    """The serving process (Starlette + Bolt + services) on 127.0.0.1:<free port>, in this process."""

    def __init__(self, settings: Settings, *, clock: Any = None, run_scheduler: bool = False) -> None:
        self.clock = clock or FrozenClock()
        self.sleep = RecordingSleep()
        self.runtime = Runtime.start(settings, clock=self.clock, run_scheduler=run_scheduler, sleep=self.sleep)
        self.services = self.runtime.services
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind(("127.0.0.1", 0))
        self.port = self._socket.getsockname()[1]
        config = uvicorn.Config(self.runtime.web_app(), log_config=None, access_log=False, lifespan="on")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._socket]}, daemon=True)
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=10)

    @property
    def db(self) -> Database:
        return self.services.db

    def start(self) -> BotUnderTest:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("the bot did not start")
            time.sleep(0.01)
        self.wait_idle()
        return self

    def stop(self) -> None:
        self.http.close()
        self._server.should_exit = True
        self._thread.join(timeout=15)
        self._socket.close()

    def wait_idle(self, timeout: float = 15.0) -> None:
        """Wait until every piece of work the acks started has finished."""
        assert self.services.wait_idle(timeout), "background work did not finish"


@dataclass
class CommandReply:
    response: httpx.Response
    response_id: str
    trigger_id: str

    @property
    def ack_text(self) -> str:
        return self.response.text
