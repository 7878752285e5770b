"""The spine: a quick request becomes a Cloudflare invite once a Super Admin approves it."""

from __future__ import annotations

import time

from tests.conftest import ALICE, BOB, CAROL, FALLBACK, MALLORY, PG_IDS, ROLE_IDS, BotFactory, World
from tests.fakes.cloudflare import FakeCloudflare, Fault
from tests.fakes.slack import FakeSlack, SlackFault
from tests.harness import BotUnderTest
from tests.helpers import file_request, roots_of, stored


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
    """The approval's redraw waits for its invite's outcome, which redraws at once for both: one
    chat.update per root (Slack allows about 50 a minute). An invite that is rescheduled leaves the
    approval's redraw to its timer; a stop redraws whatever still waits."""
    bot = make_bot(root_refresh_delay=10)  # longer than the test: only the outcome or the stop redraws
    request_id = file_request(bot, fake_slack, ALICE)
    roots = roots_of(fake_slack, request_id)
    bot.click(roots[0], "request_approve", user_id=BOB)
    updates = fake_slack.calls_to("chat.update")
    assert sorted((u["channel"], u["ts"]) for u in updates) == sorted((r.channel, r.ts) for r in roots)
    assert all("Invite sent, waiting for acceptance" in m.all_text() for m in roots_of(fake_slack, request_id))

    later = file_request(bot, fake_slack, MALLORY)
    fake_cf.inject(Fault("POST", r"/members$", status=500, times=2))  # the attempt and its re-check
    bot.click(roots_of(fake_slack, later)[0], "request_approve", user_id=BOB)
    assert stored(bot, later).status == "approved", "rescheduled, not finished"
    assert len(fake_slack.calls_to("chat.update")) == len(updates), "the approval's redraw waits"
    bot.stop()
    late = fake_slack.calls_to("chat.update")[len(updates) :]
    assert len(late) == len(roots_of(fake_slack, later)), "the stop redrew what was waiting"
    assert all("Approved, sending invite" in m.all_text() for m in roots_of(fake_slack, later))

    quick = make_bot(root_refresh_delay=0.2)
    third = file_request(quick, fake_slack, FALLBACK)
    fake_cf.inject(Fault("POST", r"/members$", status=500, times=2))
    before = len(fake_slack.calls_to("chat.update"))
    quick.click(roots_of(fake_slack, third)[0], "request_approve", user_id=BOB)
    drawn = before + len(roots_of(fake_slack, third))
    assert fake_slack.wait_until(lambda: len(fake_slack.calls_to("chat.update")) >= drawn, 5), "the timer redraws"
    assert all("Approved, sending invite" in m.all_text() for m in roots_of(fake_slack, third))
