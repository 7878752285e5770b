"""The invite (SPEC §6, basic path): POST with the granted roles, already-a-member, other 4xx
with Cloudflare's message and a Retry invite button."""

from __future__ import annotations

from tests.conftest import ALICE, BOB, ROLE_IDS, World
from tests.fakes.cloudflare import FakeCloudflare, Fault
from tests.fakes.slack import FakeSlack
from tests.harness import BotUnderTest
from tests.helpers import audit_events, audit_names, file_request, roots_of, stored, texts


def approve(bot: BotUnderTest, fake_slack: FakeSlack, request_id: int, **kwargs: object) -> None:
    bot.click(roots_of(fake_slack, request_id)[0], "request_approve", user_id=BOB, **kwargs)  # type: ignore[arg-type]


def test_invite_sent_member_stored_audited(
    bot: BotUnderTest, fake_slack: FakeSlack, fake_cf: FakeCloudflare, world: World
) -> None:
    request_id = file_request(bot, fake_slack, ALICE)
    approve(bot, fake_slack, request_id)
    [member] = fake_cf.members_with_email(world.acme, "alice@example.com")
    assert member["status"] == "pending" and [r["id"] for r in member["roles"]] == [ROLE_IDS["dns"]]
    request = stored(bot, request_id)
    assert (request.status, request.cloudflare_member_id) == ("invited", member["id"])
    assert audit_names(bot, request_id) == ["requested", "approved", "invite_sent"]
    sent = audit_events(bot, request_id)[-1]
    assert sent.details["cloudflare_member_id"] == member["id"] and sent.details["roles_granted"] == ["DNS"]


def test_an_existing_member_gets_the_missing_role_added_not_a_second_invite(
    bot: BotUnderTest, fake_slack: FakeSlack, fake_cf: FakeCloudflare, world: World
) -> None:
    fake_slack.add_user("U0ENGINE01", "engineer7@example.com", "engineer7")
    request_id = file_request(bot, fake_slack, "U0ENGINE01", 'request "Acme Production" Billing invoices')
    approve(bot, fake_slack, request_id)
    assert not fake_cf.calls_to("POST", r"/members$"), "no POST for an existing member"
    [member] = fake_cf.members_with_email(world.acme, "engineer7@example.com")
    assert {role["id"] for role in member["roles"]} == {ROLE_IDS["dns"], ROLE_IDS["billing"]}, "DNS kept, Billing added"
    request = stored(bot, request_id)
    assert request.status == "accepted" and request.member_added_to and request.cloudflare_member_id == member["id"]
    root = roots_of(fake_slack, request_id)[0]
    assert "was already a member of Acme Production: the bot added Billing" in texts(fake_slack.thread(root))
    assert "was added to your membership" in texts(fake_slack.dms_to("U0ENGINE01"))
    assert audit_names(bot, request_id)[-1] == "access_added"


def test_member_created_meanwhile_with_the_roles_counts_as_done(
    bot: BotUnderTest, fake_slack: FakeSlack, fake_cf: FakeCloudflare, world: World
) -> None:
    request_id = file_request(bot, fake_slack, ALICE)
    fake_cf.add_member(world.acme, "alice@example.com", [ROLE_IDS["dns"]], status="accepted")
    bot.clock.advance(__import__("datetime").timedelta(minutes=2))  # the member index expires
    approve(bot, fake_slack, request_id)
    assert not fake_cf.calls_to("POST", r"/members$")
    assert stored(bot, request_id).status == "accepted"
    assert "already a member of Acme Production; no invite needed" in texts(
        fake_slack.thread(roots_of(fake_slack, request_id)[0])
    )


def test_cloudflare_4xx_shows_its_message_and_a_retry_button(
    bot: BotUnderTest, fake_slack: FakeSlack, fake_cf: FakeCloudflare, world: World
) -> None:
    request_id = file_request(bot, fake_slack, ALICE)
    fake_cf.inject(
        Fault(
            "POST",
            r"/members$",
            status=400,
            body={
                "success": False,
                "errors": [{"code": 1001, "message": "Invalid request: Invalid role assignments found"}],
                "messages": [],
                "result": None,
            },
        )
    )
    approve(bot, fake_slack, request_id)
    request = stored(bot, request_id)
    assert request.status == "failed"
    root = roots_of(fake_slack, request_id)[0]
    assert "Invalid request: Invalid role assignments found" in texts(fake_slack.thread(root))
    assert root.action_ids() == ["retry_invite"]
    assert "could not be sent: Cloudflare refused the invite: Invalid request: Invalid role assignments found" in texts(
        fake_slack.dms_to(ALICE)
    )
    failed = audit_events(bot, request_id)[-1]
    assert failed.event == "invite_failed" and "Invalid role assignments" in failed.details["error"]
    # A stranger cannot retry; an approver can, and the invite goes out once.
    bot.click(root, "retry_invite", user_id="U0MALLORY1")
    assert "not allowed" in fake_slack.responses_for(bot.last_response_id)[-1]["text"]
    bot.click(root, "retry_invite", user_id=BOB)
    assert stored(bot, request_id).status == "invited"
    assert len(fake_cf.members_with_email(world.acme, "alice@example.com")) == 1
    assert audit_names(bot, request_id)[-2:] == ["invite_retried", "invite_sent"]
    assert root.action_ids() == ["revoke_access"] and "Invite sent" in root.all_text()
