"""Routing and deciding (SPEC §5): approvers found from Cloudflare, the thread root and its
replies, root updates once decided, requester DMs."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tests.conftest import ALICE, BOB, CAROL, DAVE, MALLORY, PG_IDS, BotFactory, World
from tests.fakes.cloudflare import FakeCloudflare
from tests.fakes.slack import FakeSlack
from tests.harness import BotUnderTest
from tests.helpers import audit_events, file_request, roots_of, stored, texts


def test_each_approver_gets_a_thread_root_by_dm(bot: BotUnderTest, fake_slack: FakeSlack, world: World) -> None:
    request_id = file_request(bot, fake_slack, ALICE, 'request "Acme Production" DNS rotate <!channel> records')
    roots = roots_of(fake_slack, request_id)
    assert {root.channel for root in roots} == {fake_slack.dm_channel(BOB), fake_slack.dm_channel(CAROL)}
    assert fake_slack.dm_channel(DAVE) not in {r.channel for r in roots}, "a pending Super Admin does not approve"
    root = roots[0]
    shown = root.all_text()
    for expected in (f"<@{ALICE}>", "alice@example.com", "Acme Production", "DNS", "rotate &lt;!channel&gt; records"):
        assert expected in shown
    assert "<!channel>" not in shown, "user text must not ping the channel"
    assert root.action_ids() == ["request_approve", "request_deny"]
    picker = next(b["accessory"] for b in root.blocks if b.get("accessory", {}).get("action_id") == "grant_roles")
    assert [o["value"] for o in picker["initial_options"]] == [PG_IDS["dns"]]
    assert PG_IDS["super"] not in [o["value"] for o in picker["options"]]


def test_approval_channel_gets_one_post_mentioning_approvers(
    make_bot: BotFactory, fake_slack: FakeSlack, world: World
) -> None:
    bot = make_bot(approval_channel="C0APPROVE1")
    request_id = file_request(bot, fake_slack, ALICE)
    roots = roots_of(fake_slack, request_id)
    assert [root.channel for root in roots] == ["C0APPROVE1"]
    assert f"<@{BOB}>" in roots[0].text and f"<@{CAROL}>" in roots[0].text
    bot.click(roots[0], "request_approve", user_id=BOB)
    replies = texts(fake_slack.thread(roots[0]))
    assert "Approved by" in replies and "Invite sent to alice@example.com" in replies


def test_approval_updates_every_copy_and_tells_the_requester(
    bot: BotUnderTest, fake_slack: FakeSlack, fake_cf: FakeCloudflare, world: World
) -> None:
    request_id = file_request(bot, fake_slack, ALICE)
    roots = roots_of(fake_slack, request_id)
    bob_copy = next(r for r in roots if r.channel == fake_slack.dm_channel(BOB))
    bot.click(bob_copy, "request_approve", user_id=BOB)
    for root in roots_of(fake_slack, request_id):
        assert root.action_ids() == ["revoke_access"], "decided: no Approve or Deny; the access can be revoked"
        assert "Invite sent" in root.all_text() and f"Approved by <@{BOB}>" in root.all_text()
        thread = texts(fake_slack.thread(root))
        assert f"Approved by <@{BOB}>" in thread and "Invite sent to alice@example.com" in thread
    to_alice = texts(fake_slack.dms_to(ALICE))
    assert "was approved" in to_alice and "sent an invite to alice@example.com" in to_alice
    request = stored(bot, request_id)
    member = fake_cf.members_with_email(world.acme, "alice@example.com")
    assert request.status == "invited" and [request.cloudflare_member_id] == [m["id"] for m in member]
    assert request.decided_by_slack_id == BOB and request.decided_by_email == "bob@example.com"


def test_approver_can_grant_a_different_role(
    bot: BotUnderTest, fake_slack: FakeSlack, fake_cf: FakeCloudflare, world: World
) -> None:
    request_id = file_request(bot, fake_slack, ALICE, 'request "Acme Production" Administrator deploys')
    root = roots_of(fake_slack, request_id)[0]
    bot.click(root, "request_approve", user_id=BOB, granted_role_ids=[PG_IDS["admin_ro"]])
    post = fake_cf.calls_to("POST", r"/members$")[-1]
    assert post.body["policies"][0]["permission_groups"] == [{"id": PG_IDS["admin_ro"]}]
    assert "granting Administrator Read Only (requested: Administrator)" in texts(fake_slack.thread(root))
    approved = next(e for e in audit_events(bot, request_id) if e.event == "approved")
    assert approved.details["roles_requested"] == ["Administrator"]
    assert approved.details["roles_granted"] == ["Administrator Read Only"]


def test_approve_with_no_role_picked_is_refused(
    bot: BotUnderTest, fake_slack: FakeSlack, fake_cf: FakeCloudflare, world: World
) -> None:
    request_id = file_request(bot, fake_slack, ALICE)
    root = roots_of(fake_slack, request_id)[0]
    bot.click(root, "request_approve", user_id=BOB, granted_role_ids=[])
    assert "Pick at least one grantable role" in fake_slack.responses_for(bot.last_response_id)[-1]["text"]
    assert stored(bot, request_id).status == "pending" and not fake_cf.calls_to("POST", r"/members$")


def test_a_click_whose_pickers_cannot_be_read_is_answered_and_changes_nothing(
    bot: BotUnderTest, fake_slack: FakeSlack, fake_cf: FakeCloudflare, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The click is read after the ack: a payload it cannot read gets a clear answer, not a 500."""
    request_id = file_request(bot, fake_slack, ALICE)
    root = roots_of(fake_slack, request_id)[0]
    send = bot.interact

    def with_odd_state(payload: dict[str, Any], *, wait: bool = True) -> Any:
        return send({**payload, "state": "not an object"}, wait=wait)

    monkeypatch.setattr(bot, "interact", with_odd_state)
    assert bot.click(root, "request_approve", user_id=BOB).status_code == 200
    assert "payload was not understood" in fake_slack.responses_for(bot.last_response_id)[-1]["text"]
    assert stored(bot, request_id).status == "pending" and not fake_cf.calls_to("POST", r"/members$")


def test_deny_asks_for_a_reason_and_tells_everyone(
    bot: BotUnderTest, fake_slack: FakeSlack, fake_cf: FakeCloudflare, world: World
) -> None:
    request_id = file_request(bot, fake_slack, ALICE)
    root = roots_of(fake_slack, request_id)[0]
    bot.click(root, "request_deny", user_id=BOB)
    modal = fake_slack.views[max(fake_slack.views)]
    assert modal["callback_id"] == "cf_access_deny" and "Reason (optional)" in fake_slack.view_text(modal["id"])
    assert stored(bot, request_id).status == "pending", "opening the deny form decides nothing"
    values = {"deny_reason": {"deny_reason_input": {"type": "plain_text_input", "value": "use staging instead"}}}
    response = bot.submit_view(modal, values, user_id=BOB)
    assert response.status_code == 200 and response.text == ""
    assert stored(bot, request_id).status == "denied"
    for root_copy in roots_of(fake_slack, request_id):
        assert root_copy.action_ids() == [] and "Denied" in root_copy.all_text()
        assert "use staging instead" in root_copy.all_text()
        assert "Denied by" in texts(fake_slack.thread(root_copy))
    assert "was denied by" in texts(fake_slack.dms_to(ALICE)) and "use staging instead" in texts(
        fake_slack.dms_to(ALICE)
    )
    denied = next(e for e in audit_events(bot, request_id) if e.event == "denied")
    assert denied.actor_slack_id == BOB and denied.details["reason"] == "use staging instead"
    assert not fake_cf.calls_to("POST", r"/members$")


def test_deny_without_reason(bot: BotUnderTest, fake_slack: FakeSlack, world: World) -> None:
    request_id = file_request(bot, fake_slack, ALICE)
    bot.click(roots_of(fake_slack, request_id)[0], "request_deny", user_id=CAROL)
    modal = fake_slack.views[max(fake_slack.views)]
    bot.submit_view(
        modal, {"deny_reason": {"deny_reason_input": {"type": "plain_text_input", "value": None}}}, user_id=CAROL
    )
    assert stored(bot, request_id).status == "denied" and stored(bot, request_id).decision_note is None


def test_second_click_is_told_who_decided(
    bot: BotUnderTest, fake_slack: FakeSlack, fake_cf: FakeCloudflare, world: World
) -> None:
    request_id = file_request(bot, fake_slack, ALICE)
    root = roots_of(fake_slack, request_id)[0]
    stale = copy.deepcopy(root)  # what Carol's client still shows while Bob clicks
    bot.click(root, "request_approve", user_id=BOB)
    bot.click(stale, "request_approve", user_id=CAROL)
    told = fake_slack.responses_for(bot.last_response_id)[-1]
    assert told["response_type"] == "ephemeral" and f"already approved by <@{BOB}>" in told["text"]
    bot.click(stale, "request_deny", user_id=CAROL)
    assert f"already approved by <@{BOB}>" in fake_slack.responses_for(bot.last_response_id)[-1]["text"]
    assert len(fake_cf.calls_to("POST", r"/members$")) == 1


def test_stranger_and_requester_cannot_decide(
    bot: BotUnderTest, fake_slack: FakeSlack, fake_cf: FakeCloudflare, world: World
) -> None:
    request_id = file_request(bot, fake_slack, CAROL, 'request "Acme Production" Billing invoices')
    roots = roots_of(fake_slack, request_id)
    carol_copy = next(r for r in roots if r.channel == fake_slack.dm_channel(CAROL))
    bot.click(carol_copy, "request_approve", user_id=CAROL)
    assert "You cannot approve your own request" in fake_slack.responses_for(bot.last_response_id)[-1]["text"]
    bot.click(carol_copy, "request_approve", user_id=MALLORY)
    told = fake_slack.responses_for(bot.last_response_id)[-1]
    assert told["response_type"] == "ephemeral" and "You are not allowed to approve #1" in told["text"]
    opened_before = len(fake_slack.calls_to("views.open"))
    bot.click(carol_copy, "request_deny", user_id=MALLORY)
    # The form opens at once with the fresh trigger; who may deny is checked on submission.
    assert len(fake_slack.calls_to("views.open")) == opened_before + 1
    deny_form = fake_slack.views[max(fake_slack.views)]
    values = {"deny_reason": {"deny_reason_input": {"type": "plain_text_input", "value": "no"}}}
    assert bot.submit_view(deny_form, values, user_id=MALLORY).status_code == 200
    told_mallory = [e.text for e in fake_slack.ephemerals_to(MALLORY)] + [m.text for m in fake_slack.dms_to(MALLORY)]
    assert any("not allowed to deny" in text for text in told_mallory), told_mallory
    assert stored(bot, request_id).status == "pending" and not fake_cf.calls_to("POST", r"/members$")
    refused = [e for e in audit_events(bot, request_id) if e.event == "decision_refused"]
    assert [(e.actor_slack_id, e.details["why"]) for e in refused] == [
        (CAROL, "own request"),
        (MALLORY, "not an approver"),
        (MALLORY, "not an approver"),
    ]
    assert refused[1].actor_email == "mallory@example.com"


def test_approver_rights_are_rechecked_against_cloudflare(
    bot: BotUnderTest, fake_slack: FakeSlack, fake_cf: FakeCloudflare, world: World
) -> None:
    from datetime import timedelta

    from tests.fakes.cloudflare import SUPER_ADMIN

    request_id = file_request(bot, fake_slack, ALICE)
    root = roots_of(fake_slack, request_id)[0]
    # Bob loses Super Administrator in Cloudflare; once the short cache expires he can no longer decide.
    fake_cf.remove(world.acme, world.bob_member)
    bot.clock.advance(timedelta(minutes=2))
    bot.click(root, "request_approve", user_id=BOB)
    assert "not allowed" in fake_slack.responses_for(bot.last_response_id)[-1]["text"]
    # Mallory is made Super Administrator: she can decide at once (a miss is re-checked fresh).
    fake_cf.add_member(world.acme, "mallory@example.com", [SUPER_ADMIN["id"]])
    bot.click(root, "request_approve", user_id=MALLORY)
    assert stored(bot, request_id).decided_by_slack_id == MALLORY
