"""App Home (SPEC §9): own requests, the approver's queue with the same controls and rules,
refresh on change, and a friendly empty state."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bot.access.home import HomeRefresher
from bot.cloudflare.models import Role
from bot.slack.home import home_view
from storage.models import AccessRequest
from storage.states import RequestStatus
from tests.conftest import ALICE, BOB, MALLORY, PG_IDS, ROLE_IDS, World
from tests.fakes.block_kit import view_errors
from tests.fakes.cloudflare import FakeCloudflare
from tests.fakes.slack import FakeSlack, SlackFault
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
    home_click(bot, view, "request_approve", request_id, MALLORY, [PG_IDS["dns"]])
    assert "not allowed" in texts(fake_slack.dms_to(MALLORY)), "no response_url from Home: told by DM"
    assert audit_names(bot, request_id)[-1] == "decision_refused"
    home_click(bot, view, "request_approve", request_id, BOB, [PG_IDS["billing"]])
    assert stored(bot, request_id).granted_role_names == ["Billing"]
    sent = fake_cf.calls_to("POST", r"/members$")[-1].body["policies"]
    assert [group["id"] for group in sent[0]["permission_groups"]] == [PG_IDS["billing"]]
    home_click(bot, view, "request_approve", request_id, BOB, [PG_IDS["billing"]])
    assert f"already approved by <@{BOB}>" in texts(fake_slack.dms_to(BOB))
    assert len(fake_cf.calls_to("POST", r"/members$")) == 1


def test_homes_refresh_when_a_request_changes(bot: BotUnderTest, fake_slack: FakeSlack, world: World) -> None:
    open_home(bot, fake_slack, BOB)
    open_home(bot, fake_slack, ALICE)
    request_id = file_request(bot, fake_slack, ALICE)
    assert "Waiting for your decision" in json.dumps(fake_slack.home_views[BOB]), "approvers see new requests"
    from tests.helpers import roots_of

    bot.click(roots_of(fake_slack, request_id)[0], "request_approve", user_id=BOB)
    assert "Invite sent" in json.dumps(fake_slack.home_views[ALICE])
    assert "Waiting for your decision" not in json.dumps(fake_slack.home_views[BOB])


def test_only_tabs_someone_has_opened_are_republished(bot: BotUnderTest, fake_slack: FakeSlack, world: World) -> None:
    """A tab nobody has opened is published by `app_home_opened` when they first open it, fresh;
    publishing it on every change would be Slack calls nobody sees (a requester rarely opens it)."""
    open_home(bot, fake_slack, BOB)
    publishes = len(fake_slack.calls_to("views.publish"))
    request_id = file_request(bot, fake_slack, ALICE)
    published_to = [args["user_id"] for args in fake_slack.calls_to("views.publish")[publishes:]]
    assert published_to == [BOB], "the approver who looks at the tab, not the requester who never opened it"
    assert ALICE not in fake_slack.home_views

    view = open_home(bot, fake_slack, ALICE)
    assert f"#{request_id}" in json.dumps(view), "the first open shows the request, fresh"
    from tests.helpers import roots_of

    bot.click(roots_of(fake_slack, request_id)[0], "request_approve", user_id=BOB)
    assert "Invite sent" in json.dumps(fake_slack.home_views[ALICE]), "once opened, the tab follows changes"


def _refresher(bot: BotUnderTest) -> HomeRefresher:
    return next(
        hook.__self__  # type: ignore[attr-defined]
        for hook in bot.services.notifier.on_change
        if isinstance(getattr(hook, "__self__", None), HomeRefresher)
    )


def test_refresher_retries_a_failed_publish_once(
    bot: BotUnderTest, fake_slack: FakeSlack, world: World, caplog: pytest.LogCaptureFixture
) -> None:
    """A refresh whose views.publish failed used to be dropped: the tab stayed stale until the next change."""
    refresher = _refresher(bot)
    for user_id in (ALICE, BOB):
        open_home(bot, fake_slack, user_id)
    fake_slack.home_views.clear()
    fake_slack.calls = [(name, args) for name, args in fake_slack.calls if name != "views.publish"]
    fake_slack.inject(SlackFault(method="views.publish", status=200, error="internal_error"))
    refresher.mark({ALICE})
    bot.wait_idle()
    assert ALICE in fake_slack.home_views, "published on the retry"
    assert len(fake_slack.calls_to("views.publish")) == 2

    fake_slack.inject(SlackFault(method="views.publish", status=200, error="internal_error", times=5))
    refresher.mark({BOB})
    bot.wait_idle()
    assert len(fake_slack.calls_to("views.publish")) == 4, "one retry, not more"
    assert "gave up refreshing the Home tab of " + BOB in caplog.text


def _insert(bot: BotUnderTest, count: int, **fields: Any) -> None:
    """`count` stored requests; a str field with `{n}` (or `{n:05d}`) in it varies per request."""
    now = bot.clock.now()
    with bot.db.session() as session:
        for n in range(count):
            varied = {k: v.format(n=n) if isinstance(v, str) and "{n" in v else v for k, v in fields.items()}
            values: dict[str, Any] = {
                "status": RequestStatus.PENDING.value,
                "requester_slack_id": ALICE,
                "requester_email": "alice@example.com",
                "account_id": "acc-x",
                "account_name": "Account",
                "requested_role_ids": [ROLE_IDS["dns"]],
                "requested_role_names": ["DNS"],
                "reason": "need it",
                "created_at": now - timedelta(minutes=count - n),
                "updated_at": now,
            }
            session.add(AccessRequest(**(values | varied)))


LONG_NAME = "Acme & Sons <Production> " * 8  # 200 characters, five times longer once escaped
MANY_ROLES = [f"Role number {n} with a long descriptive name" for n in range(120)]
LONG_REASON = "&<>" * 2000


def test_home_tab_copes_with_content_over_block_kit_limits(
    bot: BotUnderTest, fake_slack: FakeSlack, world: World
) -> None:
    """Many own requests and many waiting, with long names, roles and reasons: the tab is still published
    (it used to fail to build, so nothing was published), within Slack's limits, and says what it left out."""
    _insert(
        bot, 40, requester_slack_id=BOB, account_id="acc-{n}", account_name=LONG_NAME, requested_role_names=MANY_ROLES
    )
    _insert(
        bot,
        60,
        requester_slack_id="U0REQ{n:05d}",
        account_id=world.acme,
        account_name=LONG_NAME,
        requested_role_names=MANY_ROLES,
        reason=LONG_REASON,
        requester_email=("x&" * 120) + "@example.com",
    )
    view = open_home(bot, fake_slack, BOB)
    assert len(view["blocks"]) <= 100
    sections = [block["text"]["text"] for block in view["blocks"] if block["type"] == "section"]
    assert all(len(text) <= 3000 for text in sections)
    footer = " ".join(element["text"] for element in view["blocks"][-1]["elements"])
    assert "…and 25 more of your requests" in footer and "`/cf-access status`" in footer
    assert "…and 40 more waiting for your decision" in footer and "`/cf-access pending`" in footer


def test_an_approver_with_hundreds_waiting_is_told_exactly_how_many(
    bot: BotUnderTest, fake_slack: FakeSlack, world: World
) -> None:
    """The tab loads only the requests it shows and counts the rest, so the count is exact however
    many wait (it was capped at the 200 loaded), and the approver's own request is not among them."""
    _insert(bot, 250, requester_slack_id="U0REQ{n:05d}", account_id=world.acme, account_name="Acme Production")
    _insert(bot, 1, requester_slack_id=BOB, account_id=world.acme, account_name="Acme Production")
    view = open_home(bot, fake_slack, BOB)
    shown = sum(1 for block in view["blocks"] if block["type"] == "section" and "U0REQ" in json.dumps(block))
    footer = " ".join(element["text"] for element in view["blocks"][-1]["elements"])
    assert 0 < shown <= 20
    assert f"…and {250 - shown} more waiting for your decision" in footer, footer


def test_home_view_builder_stays_within_limits_for_any_input() -> None:
    """The builder itself: far more entries than fit, each as long as it can be, and a picker with 100 roles."""
    now = datetime(2026, 1, 1, tzinfo=UTC)

    def request(n: int, requester: str) -> AccessRequest:
        return AccessRequest(
            id=n,
            status=RequestStatus.PENDING.value,
            requester_slack_id=requester,
            requester_email="x&" * 120 + "@example.com",
            account_id="acc-1",
            account_name=LONG_NAME,
            requested_role_ids=[f"role-{i}" for i in range(100)],
            requested_role_names=MANY_ROLES,
            reason=LONG_REASON,
            created_at=now - timedelta(days=1),
        )

    roles = [Role(id=f"role-{i}", name=f"{'R' * 70} {i}") for i in range(100)]
    own = [request(n, BOB) for n in range(1, 301)]
    waiting = [request(n, ALICE) for n in range(301, 601)]
    view = home_view(own=own, waiting=waiting, grantable_roles={"acc-1": roles}, now=now).to_dict()
    assert view_errors(view) == ("", [])
    shown = json.dumps(view)
    footer = " ".join(element["text"] for element in view["blocks"][-1]["elements"])
    own_shown = sum(1 for n in range(1, 301) if f'"*#{n}* ' in shown)
    waiting_shown = sum(1 for n in range(301, 601) if f'"*#{n}* ' in shown)
    assert own_shown > 0
    assert f"…and {300 - own_shown} more of your requests" in footer
    assert f"…and {300 - waiting_shown} more waiting for your decision" in footer
    assert "`/cf-access help`" in footer

    few = home_view(own=own[:2], waiting=waiting[:1], grantable_roles={}, now=now).to_dict()
    assert view_errors(few) == ("", [])
    assert "more" not in json.dumps(few["blocks"][-1]), "nothing left out, nothing said"
