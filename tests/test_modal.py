"""The request modal: opened within the trigger's life, roles refreshed per account, field errors
returned with `response_action: errors`, and a filed request told by DM."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import ALICE, BOB, PG_IDS, World
from tests.fakes.cloudflare import FakeCloudflare
from tests.fakes.slack import FakeSlack
from tests.harness import BotUnderTest
from tests.helpers import file_request, stored


def open_modal(bot: BotUnderTest, fake_slack: FakeSlack) -> dict[str, Any]:
    calls_before = len(fake_slack.calls)
    reply = bot.command("", user_id=ALICE)
    assert reply.response.status_code == 200 and reply.response.text == ""
    opened = fake_slack.calls_to("views.open")
    assert opened and opened[-1]["trigger_id"] == reply.trigger_id
    # The trigger (good for 3 s, once) is spent before any other call for this command.
    new_calls = [name for name, _args in fake_slack.calls[calls_before:] if name != "auth.test"]
    assert new_calls[0] == "views.open", new_calls
    view_id = max(fake_slack.views)
    return fake_slack.views[view_id]


def select_account(bot: BotUnderTest, fake_slack: FakeSlack, view: dict[str, Any], account_id: str) -> dict[str, Any]:
    action = {
        "type": "static_select",
        "action_id": "account_select",
        "block_id": "account",
        "selected_option": {"text": {"type": "plain_text", "text": "x"}, "value": account_id},
        "action_ts": "1700000000.1",
    }
    assert bot.view_action(view, action, user_id=ALICE).status_code == 200
    return fake_slack.views[view["id"]]


def form_values(account_id: str | None, role_ids: list[str], reason: str | None) -> dict[str, Any]:
    values: dict[str, Any] = {
        "account": {
            "account_select": {
                "type": "static_select",
                "selected_option": {"text": {"type": "plain_text", "text": "x"}, "value": account_id}
                if account_id
                else None,
            }
        },
        "reason": {"reason_input": {"type": "plain_text_input", "value": reason}},
    }
    if account_id:
        values[f"roles:{account_id}"] = {
            "roles_select": {
                "type": "multi_static_select",
                "selected_options": [
                    {"text": {"type": "plain_text", "text": "x"}, "value": role_id} for role_id in role_ids
                ],
            }
        }
    return values


def test_modal_opens_with_accounts_and_the_invite_email(
    bot: BotUnderTest, fake_slack: FakeSlack, fake_cf: FakeCloudflare, world: World
) -> None:
    view = open_modal(bot, fake_slack)
    text = fake_slack.view_text(view["id"])
    assert "Acme Production" in text and "Acme Staging" in text
    assert "alice@example.com" in text
    assert view["callback_id"] == "cf_access_request"
    # The trigger is spent first (a loading view, no inputs, so no submit needed), then filled in;
    # with the accounts cached, opening the form costs no Cloudflare call.
    cloudflare_calls = len(fake_cf.calls)
    view = open_modal(bot, fake_slack)
    assert "Acme Production" in fake_slack.view_text(view["id"]) and view["submit"]["text"] == "Request"
    assert len(fake_cf.calls) == cloudflare_calls


def test_roles_refresh_when_the_account_changes(bot: BotUnderTest, fake_slack: FakeSlack, world: World) -> None:
    view = open_modal(bot, fake_slack)
    view = select_account(bot, fake_slack, view, world.acme)
    roles_block = next(b for b in view["blocks"] if b.get("block_id", "").startswith("roles:"))
    assert roles_block["block_id"] == f"roles:{world.acme}"
    names = [o["text"]["text"] for o in roles_block["element"]["options"]]
    assert "DNS" in names and "Billing" in names and not any(n.startswith("Super") for n in names)
    view = select_account(bot, fake_slack, view, world.staging)
    assert any(b.get("block_id") == f"roles:{world.staging}" for b in view["blocks"])
    assert update_hashes_were_sent(fake_slack)


def update_hashes_were_sent(fake_slack: FakeSlack) -> bool:
    return all("hash" in args for args in fake_slack.calls_to("views.update")[1:])


def test_field_errors_come_back_in_the_modal(bot: BotUnderTest, fake_slack: FakeSlack, world: World) -> None:
    view = open_modal(bot, fake_slack)
    response = bot.submit_view(view, form_values(None, [], "why"), user_id=ALICE)
    assert response.json() == {"response_action": "errors", "errors": {"account": "Choose an account."}}
    response = bot.submit_view(view, form_values(world.acme, [], "why"), user_id=ALICE)
    assert response.json()["errors"] == {f"roles:{world.acme}": "Choose at least one role."}
    response = bot.submit_view(view, form_values(world.acme, [PG_IDS["dns"]], "   "), user_id=ALICE)
    assert "Give a reason" in response.json()["errors"]["reason"]
    response = bot.submit_view(view, form_values(world.acme, [PG_IDS["dns"]], "y" * 600), user_id=ALICE)
    assert "keep it to 500" in response.json()["errors"]["reason"]
    response = bot.submit_view(view, form_values(world.acme, [PG_IDS["super"]], "please"), user_id=ALICE)
    assert "cannot be requested through Slack" in response.json()["errors"][f"roles:{world.acme}"]
    assert fake_slack.roots() == []


def test_submission_files_the_request_and_tells_the_requester(
    bot: BotUnderTest, fake_slack: FakeSlack, world: World
) -> None:
    view = open_modal(bot, fake_slack)
    response = bot.submit_view(
        view, form_values(world.acme, [PG_IDS["dns"], PG_IDS["billing"]], "on-call"), user_id=ALICE
    )
    assert response.status_code == 200 and response.text == ""
    request = stored(bot, 1)
    assert request.requested_role_names == ["DNS", "Billing"] and request.reason == "on-call"
    assert any("Request #1 filed" in m.text for m in fake_slack.dms_to(ALICE))
    assert fake_slack.dm_channel(BOB) in {root.channel for root in fake_slack.roots()}


def test_duplicate_is_refused_on_the_account_field(bot: BotUnderTest, fake_slack: FakeSlack, world: World) -> None:
    file_request(bot, fake_slack, ALICE)
    view = open_modal(bot, fake_slack)
    response = bot.submit_view(view, form_values(world.acme, [PG_IDS["billing"]], "more"), user_id=ALICE)
    assert "You already have an open request for Acme Production: #1" in response.json()["errors"]["account"]


def test_picker_options_are_validated_once_and_each_use_gets_its_own_copy() -> None:
    """A role's option is in every root and Home tab; slack_sdk would validate it on every use."""
    from slack_sdk.errors import SlackObjectFormationError

    from bot.cloudflare.models import Role
    from bot.slack.messages import option, role_option

    first = role_option(Role(id="r1", name="DNS"))
    assert role_option(Role(id="r1", name="DNS")) is first, "one object per role: validated once"
    sent = first.to_dict()
    sent["text"]["text"], sent["value"] = "changed", "x"
    assert first.to_dict() == {"text": {"type": "plain_text", "text": "DNS", "emoji": True}, "value": "r1"}
    with pytest.raises(SlackObjectFormationError):
        option("v", "x" * 76).to_dict()  # Slack's 75-character limit still holds
