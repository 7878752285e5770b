"""Serving: signature verification, health, the ack-before-work rule, Bolt's `payload` pitfall,
and Events API redeliveries."""

from __future__ import annotations

import json
import re
import time

import pytest

from tests.conftest import ALICE, World
from tests.fakes.cloudflare import FakeCloudflare, Fault
from tests.fakes.slack import FakeSlack, SlackFault
from tests.harness import BotUnderTest
from tests.helpers import reply_text, stored


def test_healthz(bot: BotUnderTest) -> None:
    response = bot.http.get("/healthz")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"


def test_only_post_on_slack_events(bot: BotUnderTest) -> None:
    assert bot.http.get("/slack/events").status_code == 405
    assert bot.http.get("/nope").status_code == 404


def test_bad_signature_is_refused(bot: BotUnderTest, fake_slack: FakeSlack) -> None:
    reply = bot.command("help", user_id=ALICE, secret="not-the-signing-secret")
    assert reply.response.status_code == 401
    assert fake_slack.responses == []


def test_stale_and_future_timestamps_are_refused(bot: BotUnderTest) -> None:
    now = int(time.time())
    assert bot.command("help", user_id=ALICE, timestamp=now - 310).response.status_code == 401
    assert bot.command("help", user_id=ALICE, timestamp=now + 310).response.status_code == 401
    assert bot.command("help", user_id=ALICE, timestamp=now - 200).response.status_code == 200


def test_missing_signature_headers_are_refused(bot: BotUnderTest) -> None:
    response = bot.http.post(
        "/slack/events",
        content=b"command=%2Fcf-access&text=help",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 401


def test_tampered_body_is_refused(bot: BotUnderTest) -> None:
    body = "command=%2Fcf-access&text=help&user_id=U0ALICE001"
    timestamp = str(int(time.time()))
    from slack_sdk.signature import SignatureVerifier

    from tests.harness import SIGNING_SECRET

    signature = SignatureVerifier(SIGNING_SECRET).generate_signature(timestamp=timestamp, body=body)
    response = bot.http.post(
        "/slack/events",
        content=(body + "x").encode(),
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Slack-Request-Timestamp": timestamp,
            "X-Slack-Signature": signature,
        },
    )
    assert response.status_code == 401


def test_ack_comes_first_even_when_cloudflare_is_slow(
    bot: BotUnderTest, fake_slack: FakeSlack, fake_cf: FakeCloudflare, world: World
) -> None:
    fake_cf.inject(Fault("GET", r"^/accounts$", status=200, delay=1.5, after_effect=True))
    started = time.monotonic()
    reply = bot.command('request "Acme Production" DNS slow cloudflare day', user_id=ALICE, wait=False)
    ack_seconds = time.monotonic() - started
    assert reply.response.status_code == 200
    assert ack_seconds < 1.0, f"ack took {ack_seconds:.2f}s"
    bot.wait_idle()
    assert "#1 filed" in reply_text(fake_slack, reply.response_id)


def test_payload_in_command_text_is_not_lost(bot: BotUnderTest, fake_slack: FakeSlack, world: World) -> None:
    """slack_bolt treats any form body containing "payload" as interactivity; regression test."""
    reply = bot.command('request "Acme Production" DNS payload debugging', user_id=ALICE)
    assert reply.response.status_code == 200
    assert "#1 filed" in reply_text(fake_slack, reply.response_id)
    assert stored(bot, 1).reason == "payload debugging"


def _home_event(event_id: str) -> str:
    return json.dumps(
        {
            "token": "legacy-verification-token",
            "team_id": "T0TEAM0001",
            "api_app_id": "A0CFACCESS",
            "type": "event_callback",
            "event_id": event_id,
            "event_time": int(time.time()),
            "event": {
                "type": "app_home_opened",
                "user": ALICE,
                "channel": "D0ALICE001",
                "tab": "home",
                "event_ts": f"{time.time():.6f}",
            },
            "authorizations": [
                {
                    "enterprise_id": None,
                    "team_id": "T0TEAM0001",
                    "user_id": "U0CFBOT001",
                    "is_bot": True,
                    "is_enterprise_install": False,
                }
            ],
        }
    )


def test_events_api_retries_are_processed_once(bot: BotUnderTest, fake_slack: FakeSlack, world: World) -> None:
    body = _home_event("Ev0HOME0001")
    assert bot.signed_post(body, "application/json").status_code == 200
    bot.wait_idle()
    retry = bot.signed_post(
        body, "application/json", headers={"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"}
    )
    assert retry.status_code == 200
    bot.wait_idle()
    assert len(fake_slack.calls_to("views.publish")) == 1
    assert bot.signed_post(_home_event("Ev0HOME0002"), "application/json").status_code == 200
    bot.wait_idle()
    assert len(fake_slack.calls_to("views.publish")) == 2


def test_url_verification(bot: BotUnderTest) -> None:
    body = json.dumps(
        {"token": "t", "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P", "type": "url_verification"}
    )
    response = bot.signed_post(body, "application/json")
    assert response.status_code == 200
    assert "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P" in response.text


def test_failed_home_publish_is_published_on_slacks_retry(
    bot: BotUnderTest, fake_slack: FakeSlack, world: World, caplog: pytest.LogCaptureFixture
) -> None:
    """The event id used to be recorded before the publish, so Slack's retry of an event whose
    publish failed was dropped as a duplicate and the Home tab stayed blank."""
    fake_slack.inject(SlackFault(method="views.publish", status=200, error="internal_error"))
    body = _home_event("Ev0HOMEFAIL")
    assert bot.signed_post(body, "application/json").status_code == 200
    bot.wait_idle()
    assert ALICE not in fake_slack.home_views
    retry = bot.signed_post(
        body, "application/json", headers={"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"}
    )
    assert retry.status_code == 200
    bot.wait_idle()
    assert ALICE in fake_slack.home_views
    assert len(fake_slack.calls_to("views.publish")) == 2
    again = bot.signed_post(
        body, "application/json", headers={"X-Slack-Retry-Num": "2", "X-Slack-Retry-Reason": "http_timeout"}
    )
    assert again.status_code == 200
    bot.wait_idle()
    assert len(fake_slack.calls_to("views.publish")) == 2, "once published, later retries are still ignored"
    assert re.search(r"_publish_home failed \(ref [0-9a-f]{8}\)", caplog.text), "the failure was logged"
