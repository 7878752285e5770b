"""The spine: a quick request becomes a Cloudflare invite once a Super Admin approves it."""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import event

import bot.access.notifier as notifier_module
from bot.access.notifier import Announcement
from tests.conftest import ALICE, BOB, CAROL, FALLBACK, MALLORY, PG_IDS, ROLE_IDS, BotFactory, World
from tests.fakes.cloudflare import FakeCloudflare, Fault
from tests.fakes.slack import FakeSlack, Message, SlackFault
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


def test_an_approval_and_its_invite_are_told_once(
    make_bot: BotFactory, fake_slack: FakeSlack, fake_cf: FakeCloudflare, world: World
) -> None:
    """The approval's messages wait for its invite's outcome, which usually follows at once: one
    chat.update per root (Slack allows about 50 a minute), one thread reply and one DM that say
    both. A rescheduled invite releases them at once; a slow one after the delay; a stop sends
    whatever still waits. Whichever way, the thread and the DMs read in order."""
    bot = make_bot(root_refresh_delay=10)  # longer than the test: only the outcome, a reschedule or the stop
    request_id = file_request(bot, fake_slack, ALICE)
    roots = roots_of(fake_slack, request_id)
    bot.click(roots[0], "request_approve", user_id=BOB)
    updates = fake_slack.calls_to("chat.update")
    assert sorted((u["channel"], u["ts"]) for u in updates) == sorted((r.channel, r.ts) for r in roots)
    assert all("Invite sent, waiting for acceptance" in m.all_text() for m in roots_of(fake_slack, request_id))
    for root in roots:
        [reply] = fake_slack.thread(root)
        assert reply.text.index(f"Approved by <@{BOB}>") < reply.text.index("Invite sent to alice@example.com")
    [dm] = fake_slack.dms_to(ALICE)
    assert dm.text.index(f"approved by <@{BOB}>") < dm.text.index("Cloudflare has sent an invite"), dm.text

    later = file_request(bot, fake_slack, MALLORY)
    fake_cf.inject(Fault("POST", r"/members$", status=500, times=2))  # the attempt and its re-check
    bot.click(roots_of(fake_slack, later)[0], "request_approve", user_id=BOB)
    assert stored(bot, later).status == "approved", "rescheduled, not finished"
    assert all("Approved, sending invite" in m.all_text() for m in roots_of(fake_slack, later)), "released at once"
    assert all("Sending the Cloudflare invite" in fake_slack.thread(m)[-1].text for m in roots_of(fake_slack, later))
    assert ["on its way" in m.text for m in fake_slack.dms_to(MALLORY)] == [True]
    bot.stop()

    slow = make_bot(root_refresh_delay=0.2)
    third = file_request(slow, fake_slack, FALLBACK)
    fake_cf.inject(Fault("POST", r"/members$", status=200, after_effect=True, delay=1.0))  # answered late
    slow.click(roots_of(fake_slack, third)[0], "request_approve", user_id=BOB)
    for root in roots_of(fake_slack, third):
        thread = [m.text for m in fake_slack.thread(root)]
        assert len(thread) == 2 and "Sending the Cloudflare invite" in thread[0] and "Invite sent" in thread[1]
    dms = [m.text for m in fake_slack.dms_to(FALLBACK)]
    assert len(dms) == 2 and "on its way" in dms[0] and "has sent an invite" in dms[1], dms
    slow.stop()

    erin = "U0ERIN0001"
    fake_slack.add_user(erin, "erin@example.com", "erin")
    stopped = make_bot(root_refresh_delay=10)
    fourth = file_request(stopped, fake_slack, erin)
    fake_cf.inject(Fault("POST", r"/members$", status=200, after_effect=True, delay=1.0))
    posted = len(fake_cf.calls_to("POST", r"/members$"))
    stopped.click(roots_of(fake_slack, fourth)[0], "request_approve", user_id=BOB, wait=False)
    fake_cf.wait_for_call("POST", r"/members$", count=posted + 1)
    stopped.stop()  # the invite is in flight: its approval goes out first, its outcome after
    for root in roots_of(fake_slack, fourth):
        thread = [m.text for m in fake_slack.thread(root)]
        assert len(thread) == 2 and "Sending the Cloudflare invite" in thread[0] and "Invite sent" in thread[1]


def test_an_outcome_known_in_time_is_told_once_however_long_slack_work_waits(
    make_bot: BotFactory, fake_slack: FakeSlack, fake_cf: FakeCloudflare, world: World
) -> None:
    """The invite finishes within ROOT_REFRESH_DELAY of its start, but the work pool that talks to
    Slack is busy for longer (a burst of clicks): the approval and its outcome still go out as one
    reply and one DM, not the approval alone at the deadline and the outcome after it."""
    bot = make_bot(root_refresh_delay=0.3)
    request_id = file_request(bot, fake_slack, ALICE)
    roots = roots_of(fake_slack, request_id)
    fake_cf.inject(Fault("POST", r"/members$", status=200, after_effect=True, delay=0.1))
    bot.click(roots[0], "request_approve", user_id=BOB, wait=False)
    fake_cf.wait_for_call("POST", r"/members$")  # the invite has started: the deadline runs
    busy = threading.Event()
    for _ in range(8):  # every worker of the pool, and more queued behind them
        bot.services.notifier.soon(lambda: busy.wait(1.0))
    bot.wait_idle()
    assert stored(bot, request_id).status == "invited"
    for root in roots:
        [reply] = fake_slack.thread(root)
        assert reply.text.index(f"Approved by <@{BOB}>") < reply.text.index("Invite sent to alice@example.com")
    [dm] = fake_slack.dms_to(ALICE)
    assert "approved by" in dm.text and "has sent an invite" in dm.text, dm.text
    assert len(fake_slack.calls_to("chat.update")) == len(roots)


def test_an_approval_whose_invite_never_starts_is_told_after_the_queued_hold(
    make_bot: BotFactory, fake_slack: FakeSlack, fake_cf: FakeCloudflare, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Held messages wait for the invite to start for QUEUED_HOLD at most (the Cloudflare pool may
    be busy with others): then they go out alone, and the outcome follows them."""
    monkeypatch.setattr(notifier_module, "QUEUED_HOLD", 0.3)
    bot = make_bot(root_refresh_delay=10)
    request_id = file_request(bot, fake_slack, ALICE)
    # As the approval does, without an invite starting: only the queued hold can release it.
    bot.services.notifier.hold(
        request_id, Announcement(thread="Approved, sending.", lead="Approved.", dm_user=ALICE, dm="On its way.")
    )
    roots = roots_of(fake_slack, request_id)
    assert fake_slack.wait_until(lambda: all(fake_slack.thread(root) for root in roots), 5), "released alone"
    bot.wait_idle()
    assert [m.text for m in fake_slack.thread(roots[0])] == ["Approved, sending."]
    assert [m.text for m in fake_slack.dms_to(ALICE)] == ["On its way."]
    bot.services.notifier.announce(request_id, Announcement(thread="Invite sent.", dm_user=ALICE, dm="Sent."))
    assert [m.text for m in fake_slack.thread(roots[0])] == ["Approved, sending.", "Invite sent."]
    assert [m.text for m in fake_slack.dms_to(ALICE)] == ["On its way.", "Sent."]


def test_the_filing_hands_its_roots_to_the_approval_on_the_same_replica(
    bot: BotUnderTest, fake_slack: FakeSlack, world: World
) -> None:
    """The roots are written once, by the filing: its approval on this replica redraws and replies
    in every root without reading them back (replicas that did not file read them: test_replicas)."""
    request_id = file_request(bot, fake_slack, ALICE)
    roots = roots_of(fake_slack, request_id)
    assert len(roots) == 2
    reads: list[str] = []

    def count_reads(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        if "FROM request_messages" in statement:
            reads.append(statement)

    event.listen(bot.db.engine, "before_cursor_execute", count_reads)
    try:
        bot.click(roots[0], "request_approve", user_id=BOB)
        bot.wait_idle()
    finally:
        event.remove(bot.db.engine, "before_cursor_execute", count_reads)
    assert reads == []
    redrawn = roots_of(fake_slack, request_id)
    assert [(r.channel, r.ts) for r in redrawn] == [(r.channel, r.ts) for r in roots]
    for root in redrawn:
        assert root.action_ids() == ["revoke_access"] and "Invite sent" in root.all_text()
        assert "Invite sent" in fake_slack.thread(root)[-1].text


def _approve_while_the_second_root_is_posted(
    bot: BotUnderTest, fake_slack: FakeSlack, fake_cf: FakeCloudflare, *, outcome_first: bool = True
) -> Message:
    """File Alice's request with the second approver's DM held by Slack, approve the first root
    meanwhile, and let the DM go once the invite's POST is out (and, with `outcome_first`, once its
    outcome has been told)."""
    second_post = threading.Event()
    fake_slack.inject(SlackFault(method="chat.postMessage", slow=True, delay=30, skip=1, until=second_post))
    try:
        bot.command('request "Acme Production" DNS need to rotate records', user_id=ALICE, wait=False)
        assert fake_slack.wait_until(lambda: len(fake_slack.calls_to("chat.postMessage")) == 2)
        [first] = fake_slack.roots()
        approver = BOB if first.channel == fake_slack.dm_channel(BOB) else CAROL
        bot.click(first, "request_approve", user_id=approver, wait=False)
        fake_cf.wait_for_call("POST", r"/members$")
        if outcome_first:
            assert fake_slack.wait_until(lambda: any("has sent an invite" in m.text for m in fake_slack.dms_to(ALICE)))
        assert "request_approve" in first.action_ids(), "the approval found no root to redraw"
        return first
    finally:
        second_post.set()


def _assert_told_once_in_order(thread: list[Message]) -> None:
    """The approval, then the invite, each said once (in one reply or two)."""
    text = "\n".join(m.text for m in thread)
    assert text.count("Approved by") == 1 and text.count("Invite sent to alice@example.com") == 1, text
    assert text.index("Approved by") < text.index("Invite sent to alice@example.com"), text


def test_a_root_decided_before_the_roots_are_stored_is_redrawn(
    bot: BotUnderTest, fake_slack: FakeSlack, fake_cf: FakeCloudflare, world: World
) -> None:
    """The first approver's DM is clickable while the second is still being posted, before the
    filing stores either: the approval then finds no root to redraw and no thread to reply in.
    Once the filing has stored them it sees the decision and redraws both, so neither keeps offering
    Approve on a decided request, and the reply that waited goes out in both threads."""
    _approve_while_the_second_root_is_posted(bot, fake_slack, fake_cf)
    bot.wait_idle()
    roots = roots_of(fake_slack, 1)
    assert {root.channel for root in roots} == {fake_slack.dm_channel(BOB), fake_slack.dm_channel(CAROL)}
    for root in roots:
        assert root.action_ids() == ["revoke_access"], root.all_text()
        assert "Invite sent" in root.all_text()
        _assert_told_once_in_order(fake_slack.thread(root))


def test_a_late_redraw_never_lands_after_a_newer_one(
    bot: BotUnderTest, fake_slack: FakeSlack, fake_cf: FakeCloudflare, world: World
) -> None:
    """The filing's late redraw reads `approved`, then Slack asks it to wait (429) while the invite's
    outcome is drawn: the outcome's redraw waits for it, so the roots end on the newer state."""
    fake_cf.inject(Fault("POST", r"/members$", status=200, after_effect=True, delay=0.5))
    fake_slack.inject(SlackFault(method="chat.update", status=429, retry_after=1))
    _approve_while_the_second_root_is_posted(bot, fake_slack, fake_cf, outcome_first=False)
    bot.wait_idle()
    assert len(fake_slack.calls_to("chat.update")) >= 3, "the filing's redraw was retried after the 429"
    for root in roots_of(fake_slack, 1):
        assert root.action_ids() == ["revoke_access"], root.all_text()
        assert "Invite sent" in root.all_text()
        _assert_told_once_in_order(fake_slack.thread(root))


def test_replies_that_arrive_while_the_waiting_ones_go_out_wait_behind_them(
    bot: BotUnderTest, fake_slack: FakeSlack, world: World
) -> None:
    """Replies made while a request is being filed go out in order once its roots are stored,
    and a reply made while they are going out waits behind them, however slow Slack is."""
    request_id = file_request(bot, fake_slack, ALICE)
    roots = roots_of(fake_slack, request_id)
    notifier = bot.services.notifier
    notifier.filing_started(request_id)  # as while its roots are posted
    assert notifier.reply(request_id, "first") == 0
    slack_busy = threading.Event()
    posted = len(fake_slack.calls_to("chat.postMessage"))
    fake_slack.inject(SlackFault(method="chat.postMessage", slow=True, delay=30, until=slack_busy))
    posting = threading.Thread(target=notifier.filing_done, args=(request_id,))
    posting.start()
    try:
        assert fake_slack.wait_until(lambda: len(fake_slack.calls_to("chat.postMessage")) == posted + 1)
        notifier.reply(request_id, "second")  # while "first" is still on its way
    finally:
        slack_busy.set()
    posting.join(10)
    for root in roots:
        assert [m.text for m in fake_slack.thread(root)] == ["first", "second"]
    notifier.reply(request_id, "third")  # the filing is done: straight to the threads
    assert [m.text for m in fake_slack.thread(roots[0])] == ["first", "second", "third"]


def test_a_hold_replacing_one_already_released_does_not_send_it_twice(
    make_bot: BotFactory, fake_slack: FakeSlack, world: World
) -> None:
    """A second hold (a retried invite) arrives while the first, released, waits for a busy Slack
    pool: the first goes out once, the second waits for its own outcome."""
    bot = make_bot(root_refresh_delay=10)
    request_id = file_request(bot, fake_slack, ALICE)
    roots = roots_of(fake_slack, request_id)
    notifier = bot.services.notifier
    busy = threading.Event()
    for _ in range(8):
        notifier.soon(lambda: busy.wait(5.0))
    notifier.hold(request_id, Announcement(thread="Approved, sending."))
    notifier.release(request_id)  # rescheduled: queued behind the busy pool
    notifier.hold(request_id, Announcement(thread="Retrying the invite."))
    busy.set()
    bot.wait_idle()
    assert [m.text for m in fake_slack.thread(roots[0])] == ["Approved, sending."]
    notifier.announce(request_id, Announcement(thread="Invite sent."))
    assert [m.text for m in fake_slack.thread(roots[0])] == ["Approved, sending.", "Retrying the invite.\nInvite sent."]
