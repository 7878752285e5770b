"""Who may decide, who may request, what the bot may touch, and what Slack may show (issue 11).

Each test reproduces a gap found by trying the bot as an attacker or a careless user would.
"""

from __future__ import annotations

import json

import pytest

from tests.conftest import ALICE, BOB, CAROL, MALLORY, BotFactory, World
from tests.fakes.cloudflare import BILLING, DNS, PG_BILLING, PG_SUPER_ADMIN, SUPER_ADMIN, FakeCloudflare, Fault
from tests.fakes.slack import FakeSlack
from tests.harness import BotUnderTest
from tests.helpers import answer, audit_names, file_request, roots_of, stored, texts
from tests.test_commands import request_count

# --- 1. who may decide ------------------------------------------------------------------------------


def member_reads(fake_cf: FakeCloudflare, member_id: str) -> int:
    return len(fake_cf.calls_to("GET", rf"/members/{member_id}$"))


def test_a_demoted_super_admin_cannot_approve(
    bot: BotUnderTest, fake_slack: FakeSlack, fake_cf: FakeCloudflare, world: World
) -> None:
    request_id = file_request(bot, fake_slack, ALICE)  # Bob is in the cached approver list now
    fake_cf.set_member_roles(world.acme, world.bob_member, [DNS["id"]])  # demoted in the dashboard
    bot.click(roots_of(fake_slack, request_id)[0], "request_approve", user_id=BOB)
    told = fake_slack.responses_for(bot.last_response_id)[-1]["text"]
    assert "not allowed to approve" in told
    assert stored(bot, request_id).status == "pending" and not fake_cf.calls_to("POST", r"/members$")
    assert member_reads(fake_cf, world.bob_member) == 1, "one read of the clicker's own membership"
    assert audit_names(bot, request_id)[-1] == "decision_refused"


def test_a_removed_super_admin_cannot_approve_and_a_confirmed_one_can(
    bot: BotUnderTest, fake_slack: FakeSlack, fake_cf: FakeCloudflare, world: World
) -> None:
    request_id = file_request(bot, fake_slack, ALICE)
    fake_cf.remove(world.acme, world.bob_member)
    bot.click(roots_of(fake_slack, request_id)[0], "request_approve", user_id=BOB)
    assert stored(bot, request_id).status == "pending"
    carol_member = fake_cf.members_with_email(world.acme, "carol@example.com")[0]["id"]
    bot.click(roots_of(fake_slack, request_id)[0], "request_approve", user_id=CAROL)
    assert stored(bot, request_id).status == "invited"
    assert member_reads(fake_cf, carol_member) == 1


def test_a_super_admin_by_policy_only_approves(
    bot: BotUnderTest, fake_slack: FakeSlack, fake_cf: FakeCloudflare, world: World
) -> None:
    """Since 2026 the dashboard may grant Super Administrator only as a policy (label all_privileges)."""
    fake_cf.set_member_roles(world.acme, world.bob_member, [])
    member = fake_cf.accounts[world.acme]["members"][world.bob_member]
    member["policies"] = [
        {
            "id": "f267e341f3dd4697bd3b9f71dd96247f",
            "access": "allow",
            "permission_groups": [
                {"id": "b1b2c3", "name": "Super Administrator - All Privileges", "meta": {"label": "all_privileges"}}
            ],
            "resource_groups": [
                {
                    "id": "6d7f2f5f5b1d4a0e9081fdc98d432fd1",
                    "name": f"com.cloudflare.api.account.{world.acme}",
                    "scope": [{"key": f"com.cloudflare.api.account.{world.acme}", "objects": [{"key": "*"}]}],
                }
            ],
        }
    ]
    request_id = file_request(bot, fake_slack, ALICE)
    assert fake_slack.dm_channel(BOB) in {root.channel for root in roots_of(fake_slack, request_id)}
    bot.click(roots_of(fake_slack, request_id)[0], "request_approve", user_id=BOB)
    assert stored(bot, request_id).status == "invited"


def test_clicks_by_a_non_approver_cost_one_listing(
    bot: BotUnderTest, fake_slack: FakeSlack, fake_cf: FakeCloudflare, world: World
) -> None:
    request_id = file_request(bot, fake_slack, ALICE)
    root = roots_of(fake_slack, request_id)[0]
    first_pages_before = len([c for c in fake_cf.calls_to("GET", r"/members$") if c.query.get("page") == "1"])
    for _ in range(40):
        bot.click(root, "request_approve", user_id=MALLORY, wait=False)
    bot.wait_idle()
    listings = len([c for c in fake_cf.calls_to("GET", r"/members$") if c.query.get("page") == "1"])
    assert listings - first_pages_before <= 1, f"{listings - first_pages_before} member listings for 40 clicks"
    assert stored(bot, request_id).status == "pending"


# --- 2. approval re-checks what holds now --------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ("domain", "may now only go to addresses at"),
        ("account", "can no longer be requested"),
        ("deactivated", "may no longer hold access"),
    ],
)
def test_approval_rechecks_what_holds_now(
    make_bot: BotFactory,
    fake_slack: FakeSlack,
    fake_cf: FakeCloudflare,
    world: World,
    change: str,
    expected: str,
) -> None:
    filing_bot = make_bot()
    request_id = file_request(filing_bot, fake_slack, ALICE)
    overrides: dict[str, object] = {}
    if change == "domain":
        overrides["allowed_email_domains"] = "corp.example"
    if change == "account":
        overrides["cloudflare_account_ids"] = world.staging
    if change == "deactivated":
        fake_slack.users[ALICE].deleted = True
    deciding_bot = make_bot(**overrides)  # restarted with the new configuration, same database
    deciding_bot.click(roots_of(fake_slack, request_id)[0], "request_approve", user_id=BOB)
    assert stored(deciding_bot, request_id).status == "pending"
    assert not fake_cf.calls_to("POST", r"/members$")
    assert expected in texts(fake_slack.thread(roots_of(fake_slack, request_id)[0]))
    assert expected in fake_slack.responses_for(deciding_bot.last_response_id)[-1]["text"]


# --- 3. who may request ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("standing", "expected"),
    [
        ({"deleted": True}, "deactivated"),
        ({"is_bot": True}, "Bots and apps cannot"),
        ({"is_stranger": True}, "another organisation"),
        ({"team_id": "T0OTHER001"}, "another organisation"),
        ({"is_email_confirmed": False}, "not confirmed"),
        ({"is_restricted": True}, "Guests"),
        ({"is_ultra_restricted": True}, "Guests"),
    ],
)
def test_only_confirmed_people_of_this_workspace_may_request(
    bot: BotUnderTest, fake_slack: FakeSlack, world: World, standing: dict[str, object], expected: str
) -> None:
    fake_slack.add_user("U0ASKER001", "asker@example.com", "asker", **standing)
    said = answer(bot, fake_slack, 'request "Acme Production" DNS records', "U0ASKER001")
    assert expected in said and "filed" not in said
    assert request_count(bot) == 0


def test_guests_may_request_when_allowed_and_approvers_see_it(
    make_bot: BotFactory, fake_slack: FakeSlack, world: World
) -> None:
    bot = make_bot(allow_guests=True)
    fake_slack.add_user("U0GUEST001", "guest@example.com", "guest", is_restricted=True)
    request_id = file_request(bot, fake_slack, "U0GUEST001")
    assert "multi-channel guest" in roots_of(fake_slack, request_id)[0].all_text()


# --- 4. the bot never takes over what it did not create --------------------------------------------------


def test_a_member_added_in_the_dashboard_meanwhile_gets_exactly_the_missing_access(
    bot: BotUnderTest, fake_slack: FakeSlack, fake_cf: FakeCloudflare, world: World
) -> None:
    request_id = file_request(bot, fake_slack, ALICE)  # asks for DNS
    alice = fake_cf.add_member(world.acme, "alice@example.com", [BILLING["id"]])  # added in the dashboard meanwhile
    root = roots_of(fake_slack, request_id)[0]
    bot.click(root, "request_approve", user_id=BOB)  # the cached index did not know her: one POST, refused
    request = stored(bot, request_id)
    assert request.status == "accepted" and request.member_added_to, "the refusal made the bot look again"
    assert not request.member_created_by_bot, "never taken for a member the bot created"
    assert (request.access_added or {}).get("ids") == request.granted_role_ids, "only DNS is the bot's grant"
    assert len(fake_cf.calls_to("POST", r"/members$")) == 1 and len(fake_cf.calls_to("PUT", r"/members/")) == 1
    assert not fake_cf.calls_to("DELETE", r"/members/")
    held = {role["id"] for role in fake_cf.accounts[world.acme]["members"][alice]["roles"]}
    assert held == {BILLING["id"], DNS["id"]}, "Billing kept, DNS added"
    assert "invite_adopted" not in audit_names(bot, request_id)


def test_resend_never_touches_an_invite_made_in_the_dashboard(
    bot: BotUnderTest, fake_slack: FakeSlack, fake_cf: FakeCloudflare, world: World
) -> None:
    from datetime import timedelta

    from bot.ops.scheduler import Sweeper

    request_id = file_request(bot, fake_slack, ALICE)
    fake_cf.add_member(world.acme, "alice@example.com", [DNS["id"]], status="pending")  # invited in the dashboard
    bot.click(roots_of(fake_slack, request_id)[0], "request_approve", user_id=BOB)
    request = stored(bot, request_id)
    assert request.status == "invited" and not request.member_created_by_bot
    bot.clock.advance(timedelta(days=7, minutes=1))
    Sweeper(bot.services).run_once()
    thread = texts(fake_slack.thread(roots_of(fake_slack, request_id)[0]))
    assert "created in the Cloudflare dashboard" in thread
    assert "resend_invite" not in json.dumps([m.blocks for m in fake_slack.thread(roots_of(fake_slack, request_id)[0])])
    result = bot.services.decisions  # a forged Resend click is refused too
    from bot.access.invite_followup import InviteFollowUp

    refused = InviteFollowUp(bot.services, batch=1).resend(request_id, BOB)
    assert not refused.ok and "dashboard" in refused.message
    assert result is not None and not fake_cf.calls_to("DELETE", r"/members/")


# --- 5. every interpolated value is escaped ------------------------------------------------------------

FORBIDDEN = ("<!channel>", "<!here>", "<!everyone>", "<@U0EVIL0001>", "<https://evil.example")


def everything_slack_shows(fake_slack: FakeSlack) -> str:
    shown = [m.all_text() for m in fake_slack.messages]
    shown += [json.dumps([e.text, e.blocks]) for e in fake_slack.ephemerals]
    shown += [json.dumps(r) for r in fake_slack.responses]
    shown += [json.dumps(v) for v in fake_slack.views.values()]
    shown += [json.dumps(v) for v in fake_slack.home_views.values()]
    return "\n".join(shown)


def test_names_emails_and_cloudflare_errors_can_never_mention_or_link(
    make_bot: BotFactory, fake_slack: FakeSlack, fake_cf: FakeCloudflare, world: World
) -> None:
    evil_role = {"id": "0123456789abcdef0123456789abcdef", "name": "DNS <@U0EVIL0001>", "description": "<!here>"}
    evil_group = {
        "id": evil_role["id"],
        "name": evil_role["name"],
        "meta": {"label": "<!channel>", "scopes": "com.cloudflare.api.account", "description": "<!here>"},
    }
    evil = fake_cf.add_account(
        "Acme <!channel> & Co",
        roles=[SUPER_ADMIN, evil_role, BILLING],
        permission_groups=[PG_SUPER_ADMIN, evil_group, PG_BILLING],
    )
    fake_cf.add_member(evil, "bob@example.com", [SUPER_ADMIN["id"]])
    fake_slack.add_user("U0AMPERS01", "o&brien@example.com", "obrien")
    bot = make_bot()
    answer(bot, fake_slack, f"roles {evil}", "U0AMPERS01")
    answer(bot, fake_slack, "accounts", "U0AMPERS01")
    answer(bot, fake_slack, f"request {evil} Nope <https://evil.example|click>", "U0AMPERS01")
    request_id = file_request(bot, fake_slack, "U0AMPERS01", f"request {evil} {evil_role['id']} <!everyone> please")
    body = {
        "success": False,
        "errors": [{"code": 1001, "message": "Invalid request: <!channel> <https://evil.example>"}],
    }
    fake_cf.inject(Fault("POST", r"/members$", status=400, body=body))
    bot.click(roots_of(fake_slack, request_id)[0], "request_approve", user_id=BOB)
    assert stored(bot, request_id).status == "failed"
    answer(bot, fake_slack, "status", "U0AMPERS01")
    answer(bot, fake_slack, "pending", BOB)
    shown = everything_slack_shows(fake_slack)
    assert "Acme &lt;!channel&gt; &amp; Co" in shown and "o&amp;brien@example.com" in shown
    leaked = [token for token in FORBIDDEN if token in shown]
    assert leaked == []


def test_a_reason_of_only_invisible_characters_is_no_reason(
    bot: BotUnderTest, fake_slack: FakeSlack, world: World
) -> None:
    said = answer(bot, fake_slack, 'request "Acme Production" DNS \u200b\u200d\u2060\u00ad\ufeff', ALICE)
    assert "Give a reason" in said
    assert request_count(bot) == 0
