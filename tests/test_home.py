"""App Home (SPEC §9): own requests, the approver's queue with the same controls and rules,
refresh on change, and a friendly empty state."""

from __future__ import annotations

import json
import time
from typing import Any

from tests.conftest import ALICE, BOB, MALLORY, ROLE_IDS, World
from tests.fakes.cloudflare import FakeCloudflare
from tests.fakes.slack import FakeSlack
from tests.harness import BotUnderTest
from tests.helpers import audit_names, file_request, stored, texts


def open_home(bot: BotUnderTest, fake_slack: FakeSlack, user_id: str) -> dict[str, Any]:
    body = json.dumps(
        {
            "token": "t",
            "team_id": "T0TEAM0001",
            "api_app_id": "A0CFACCESS",
            "type": "event_callback",
            "event_id": f"Ev{time.time_ns()}",
            "event_time": int(time.time()),
            "event": {
                "type": "app_home_opened",
                "user": user_id,
                "channel": "D0X",
                "tab": "home",
                "event_ts": f"{time.time():.6f}",
            },
            "authorizations": [{"team_id": "T0TEAM0001", "user_id": "U0CFBOT001", "is_bot": True}],
        }
    )
    assert bot.signed_post(body, "application/json").status_code == 200
    bot.wait_idle()
    return fake_slack.home_views[user_id]


def home_click(
    bot: BotUnderTest, view: dict[str, Any], action_id: str, request_id: int, user_id: str, granted: list[str]
) -> None:
    state = {
        "values": {
            f"grant:{request_id}": {
                "grant_roles": {
                    "type": "multi_static_select",
                    "selected_options": [
                        {"text": {"type": "plain_text", "text": "x"}, "value": role_id} for role_id in granted
                    ],
                }
            }
        }
    }
    action = {
        "type": "button",
        "action_id": action_id,
        "block_id": f"decision:{request_id}",
        "value": str(request_id),
        "text": {"type": "plain_text", "text": "Approve"},
        "action_ts": f"{time.time():.6f}",
    }
    bot.view_action({**view, "state": state}, action, user_id=user_id)


def test_empty_state(bot: BotUnderTest, fake_slack: FakeSlack, world: World) -> None:
    view = open_home(bot, fake_slack, MALLORY)
    assert view["type"] == "home"
    assert "You have no requests yet" in json.dumps(view) and "/cf-access" in json.dumps(view)
    assert "Waiting for your decision" not in json.dumps(view)


def test_requester_sees_own_requests(bot: BotUnderTest, fake_slack: FakeSlack, world: World) -> None:
    file_request(bot, fake_slack, ALICE)
    shown = json.dumps(open_home(bot, fake_slack, ALICE))
    assert "*#1* Acme Production: DNS" in shown and "Pending" in shown
    assert "request_approve" not in shown


def test_approver_decides_from_home_with_the_same_rules(
    bot: BotUnderTest, fake_slack: FakeSlack, fake_cf: FakeCloudflare, world: World
) -> None:
    request_id = file_request(bot, fake_slack, ALICE)
    view = open_home(bot, fake_slack, BOB)
    shown = json.dumps(view)
    assert "Waiting for your decision" in shown and "request_approve" in shown and "grant_roles" in shown
    home_click(bot, view, "request_approve", request_id, MALLORY, [ROLE_IDS["dns"]])
    assert "not allowed" in texts(fake_slack.dms_to(MALLORY)), "no response_url from Home: told by DM"
    assert audit_names(bot, request_id)[-1] == "decision_refused"
    home_click(bot, view, "request_approve", request_id, BOB, [ROLE_IDS["billing"]])
    assert stored(bot, request_id).granted_role_names == ["Billing"]
    assert fake_cf.calls_to("POST", r"/members$")[-1].body["roles"] == [ROLE_IDS["billing"]]
    home_click(bot, view, "request_approve", request_id, BOB, [ROLE_IDS["billing"]])
    assert f"already approved by <@{BOB}>" in texts(fake_slack.dms_to(BOB))
    assert len(fake_cf.calls_to("POST", r"/members$")) == 1


def test_homes_refresh_when_a_request_changes(bot: BotUnderTest, fake_slack: FakeSlack, world: World) -> None:
    request_id = file_request(bot, fake_slack, ALICE)
    assert "Waiting for your decision" in json.dumps(fake_slack.home_views[BOB]), "approvers see new requests"
    from tests.helpers import roots_of

    bot.click(roots_of(fake_slack, request_id)[0], "request_approve", user_id=BOB)
    assert "Invite sent" in json.dumps(fake_slack.home_views[ALICE])
    assert "Waiting for your decision" not in json.dumps(fake_slack.home_views[BOB])
