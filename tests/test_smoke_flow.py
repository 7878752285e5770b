"""The spine: a quick request becomes a Cloudflare invite once a Super Admin approves it."""

from __future__ import annotations

import time

from tests.conftest import ALICE, BOB, CAROL, PG_IDS, ROLE_IDS, World
from tests.fakes.cloudflare import FakeCloudflare
from tests.fakes.slack import FakeSlack, SlackFault
from tests.harness import BotUnderTest


def test_request_approve_invite(
    bot: BotUnderTest, fake_slack: FakeSlack, fake_cf: FakeCloudflare, world: World
) -> None:
    reply = bot.command('request "Acme Production" DNS need to rotate records', user_id=ALICE)
    assert reply.response.status_code == 200
    answer = fake_slack.responses_for(reply.response_id)
    assert answer and "#1 filed" in answer[-1]["text"], answer
    roots = fake_slack.roots()
    assert {root.channel for root in roots} == {fake_slack.dm_channel(BOB), fake_slack.dm_channel(CAROL)}
    bot.click(roots[0], "request_approve", user_id=BOB)
    posts = fake_cf.calls_to("POST", r"/members$")
    account_wide = fake_cf.account_wide_group(world.acme)["id"]
    grant = {"access": "allow", "permission_groups": [{"id": PG_IDS["dns"]}], "resource_groups": [{"id": account_wide}]}
    assert len(posts) == 1 and posts[0].body == {"email": "alice@example.com", "policies": [grant]}
    [member] = fake_cf.members_with_email(world.acme, "alice@example.com")
    assert [role["id"] for role in member["roles"]] == [ROLE_IDS["dns"]], "the legacy role follows the policy"
    assert any("Invite sent" in m.text for m in fake_slack.dms_to(ALICE) + fake_slack.thread(roots[0]))


def test_the_invite_goes_out_while_the_approval_is_announced_and_the_thread_reads_in_order(
    bot: BotUnderTest, fake_slack: FakeSlack, fake_cf: FakeCloudflare, world: World
) -> None:
    """The POST does not wait for the approval's Slack messages; the invite's own messages wait for
    them, so a slow Slack never reorders the thread or the requester's DMs."""
    bot.command('request "Acme Production" DNS need to rotate records', user_id=ALICE)
    root = fake_slack.roots()[0]
    fake_slack.inject(SlackFault(method="chat.postMessage", slow=True, delay=0.5))
    clicked = time.monotonic()
    bot.click(root, "request_approve", user_id=BOB)
    [post] = fake_cf.calls_to("POST", r"/members$")
    assert post.received_at - clicked < 0.5, "the invite did not wait for the slow approval reply"
    thread = [m.text for m in fake_slack.thread(root)]
    approved = next(i for i, text in enumerate(thread) if "Approved by" in text)
    sent = next(i for i, text in enumerate(thread) if "Invite sent" in text)
    assert approved < sent, thread
    dms = [m.text for m in fake_slack.dms_to(ALICE)]
    assert len(dms) == 2 and "on its way" in dms[0] and "has sent an invite" in dms[1], dms
