"""The spine: a quick request becomes a Cloudflare invite once a Super Admin approves it."""

from __future__ import annotations

import time

from tests.conftest import ALICE, BOB, CAROL, PG_IDS, ROLE_IDS, BotFactory, World
from tests.fakes.cloudflare import FakeCloudflare
from tests.fakes.slack import FakeSlack, SlackFault
from tests.harness import BotUnderTest
from tests.helpers import file_request, roots_of, texts


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


def test_an_approval_and_its_invite_redraw_each_root_once(
    make_bot: BotFactory, fake_slack: FakeSlack, fake_cf: FakeCloudflare, world: World
) -> None:
    """The approval and the invite a few ms later are one change for the roots: one chat.update per
    root (Slack allows about 50 a minute), showing the final state. A stop redraws what still waits."""
    bot = make_bot(root_refresh_delay=10)  # the timer never fires here: the stop's flush must redraw
    request_id = file_request(bot, fake_slack, ALICE)
    roots = roots_of(fake_slack, request_id)
    bot.click(roots[0], "request_approve", user_id=BOB)
    assert "Invite sent" in texts(fake_slack.thread(roots[0])), "the invite and its reply did not wait"
    assert fake_slack.calls_to("chat.update") == [], "redrawn before the delay"
    bot.stop()
    updates = fake_slack.calls_to("chat.update")
    assert sorted((u["channel"], u["ts"]) for u in updates) == sorted((r.channel, r.ts) for r in roots)
    assert all("Invite sent, waiting for acceptance" in m.all_text() for m in roots_of(fake_slack, request_id))

    quick = make_bot(root_refresh_delay=0.2)
    second = file_request(quick, fake_slack, CAROL)
    before = len(fake_slack.calls_to("chat.update"))
    quick.click(roots_of(fake_slack, second)[0], "request_approve", user_id=BOB)
    wanted = before + len(roots_of(fake_slack, second))
    assert fake_slack.wait_until(lambda: len(fake_slack.calls_to("chat.update")) >= wanted, 5), "never redrawn"
    quick.wait_idle()
    assert len(fake_slack.calls_to("chat.update")) == wanted, "one redraw per root, not one per change"
