"""Scheduled work (SPEC §7) driven with an injected clock: reminders, expiry, invite follow-up,
resend, once-only under restarts and racing sweepers, and bounded queries."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from slack_sdk.http_retry import FixedValueRetryIntervalCalculator
from sqlalchemy import event, insert

from bot.core.clock import SystemClock
from bot.ops.scheduler import Sweeper
from storage.models import AccessRequest
from tests.conftest import ALICE, BOB, CAROL, FALLBACK, BotFactory, World
from tests.fakes.cloudflare import FakeCloudflare
from tests.fakes.slack import FakeSlack, SlackFault
from tests.harness import BotUnderTest
from tests.helpers import audit_events, audit_names, file_request, roots_of, stored, texts


def sweep(bot: BotUnderTest) -> None:
    report = Sweeper(bot.services).run_once()
    assert report.errors == []


def reminders(fake_slack: FakeSlack, request_id: int) -> list[str]:
    return [
        m.text for root in roots_of(fake_slack, request_id) for m in fake_slack.thread(root) if "Reminder" in m.text
    ]


def invited_request(bot: BotUnderTest, fake_slack: FakeSlack) -> int:
    request_id = file_request(bot, fake_slack, ALICE)
    bot.click(roots_of(fake_slack, request_id)[0], "request_approve", user_id=BOB)
    assert stored(bot, request_id).status == "invited"
    return request_id


def test_approvers_are_reminded_at_each_interval(bot: BotUnderTest, fake_slack: FakeSlack, world: World) -> None:
    request_id = file_request(bot, fake_slack, ALICE)
    bot.clock.advance(timedelta(hours=3, minutes=59))
    sweep(bot)
    assert reminders(fake_slack, request_id) == []
    bot.clock.advance(timedelta(minutes=2))
    sweep(bot)
    texts_now = reminders(fake_slack, request_id)
    assert len(texts_now) == 2, "one reply in each approver's copy"
    assert all(f"<@{BOB}>" in t and f"<@{CAROL}>" in t and "has waited 4h 1m" in t for t in texts_now)
    assert any("Reminder" in m.text and m.thread_ts is None for m in fake_slack.dms_to(BOB)), "DM mode: a DM too"
    sweep(bot)
    assert len(reminders(fake_slack, request_id)) == 2, "not twice for the same interval"
    bot.clock.advance(timedelta(hours=4))
    sweep(bot)
    assert len(reminders(fake_slack, request_id)) == 4
    sent = [e for e in audit_events(bot, request_id) if e.event == "reminder_sent"]
    assert [e.details["reminder_number"] for e in sent] == [1, 2]
    assert sent[0].details["to"] == sorted([BOB, CAROL])


@pytest.mark.parametrize("failure", ["refused", "no answer"])
def test_a_reminder_goes_out_when_slack_cannot_say_who_approves(
    make_bot: BotFactory, fake_slack: FakeSlack, world: World, failure: str
) -> None:
    """Four hours on, the approvers' cached ids have lapsed and Slack refuses (or never answers)
    every look-up: the reminder still goes in each thread, to the approvers last known (not the
    fallback approvers: this account has Super Admins), and the roots are redrawn with their age.
    A process that never knew them names no one."""
    bot = make_bot(fallback_approvers=FALLBACK)
    for handler in bot.services.slack.client.retry_handlers:  # retried at once: no real backoff sleeps
        handler.interval_calculator = FixedValueRetryIntervalCalculator(0)
    request_id = file_request(bot, fake_slack, ALICE)
    bot.clock.advance(timedelta(hours=4, minutes=1))
    refused = SlackFault("users.lookupByEmail", status=200, error="internal_error", times=1000)
    fake_slack.inject(refused if failure == "refused" else SlackFault("users.lookupByEmail", drop=True, times=1000))
    sweep(bot)
    texts_now = reminders(fake_slack, request_id)
    assert len(texts_now) == 2 and all(
        t.startswith(f":bell: Reminder: <@{BOB}>, <@{CAROL}>, request #1") for t in texts_now
    )
    assert fake_slack.dms_to(FALLBACK) == []
    for root in roots_of(fake_slack, request_id):
        assert "4h 1m ago" in root.all_text() and root.action_ids() == ["request_approve", "request_deny"]
    restarted = make_bot(fallback_approvers=FALLBACK, clock=bot.clock)
    for handler in restarted.services.slack.client.retry_handlers:
        handler.interval_calculator = FixedValueRetryIntervalCalculator(0)
    bot.clock.advance(timedelta(hours=4))
    sweep(restarted)
    assert reminders(fake_slack, request_id)[-1].startswith(":bell: Reminder: request #1"), "no one named"
    assert fake_slack.dms_to(FALLBACK) == []


def test_pending_requests_expire(bot: BotUnderTest, fake_slack: FakeSlack, world: World) -> None:
    request_id = file_request(bot, fake_slack, ALICE)
    bot.clock.advance(timedelta(days=7, seconds=1))
    sweep(bot)
    assert stored(bot, request_id).status == "expired"
    for root in roots_of(fake_slack, request_id):
        assert root.action_ids() == [] and "Expired" in root.all_text()
        assert "expired" in texts(fake_slack.thread(root))
    assert "expired after 7d without a decision" in texts(fake_slack.dms_to(ALICE))
    assert audit_names(bot, request_id)[-1] == "expired"
    assert reminders(fake_slack, request_id) == [], "no reminder for a request that expires in the same sweep"
    # An expired request frees the slot: the requester may ask again.
    assert file_request(bot, fake_slack, ALICE) == request_id + 1


def test_accepted_invites_are_announced(
    bot: BotUnderTest, fake_slack: FakeSlack, fake_cf: FakeCloudflare, world: World
) -> None:
    request_id = invited_request(bot, fake_slack)
    bot.clock.advance(timedelta(minutes=6))
    sweep(bot)
    assert stored(bot, request_id).status == "invited", "still pending in Cloudflare"
    fake_cf.accept(world.acme, stored(bot, request_id).cloudflare_member_id or "")
    bot.clock.advance(timedelta(minutes=6))
    sweep(bot)
    assert stored(bot, request_id).status == "accepted"
    root = roots_of(fake_slack, request_id)[0]
    assert "accepted the invite" in texts(fake_slack.thread(root)) and "Accepted" in root.all_text()
    assert "You are now a member of *Acme Production*" in texts(fake_slack.dms_to(ALICE))
    assert audit_names(bot, request_id)[-2:] == ["invite_accepted", "two_factor_nudged"]


def test_one_member_list_walk_per_account_per_sweep(
    bot: BotUnderTest, fake_slack: FakeSlack, fake_cf: FakeCloudflare, world: World
) -> None:
    for n in range(3):
        user = fake_slack.add_user(f"U0FOLLOW0{n}", f"follow{n}@example.com", f"follow{n}")
        request_id = file_request(bot, fake_slack, user)
        bot.click(roots_of(fake_slack, request_id)[0], "request_approve", user_id=BOB)
    bot.clock.advance(timedelta(minutes=6))
    lists_before = len(fake_cf.calls_to("GET", r"/members$"))
    gets_before = len(fake_cf.calls_to("GET", r"/members/"))
    sweep(bot)
    pages = len(fake_cf.calls_to("GET", r"/members$")) - lists_before
    assert pages == 3, "one walk of ~128 members in pages of 50"
    assert len(fake_cf.calls_to("GET", r"/members/")) == gets_before, "no GET per request"


def test_invitee_is_reminded_then_approvers_offered_resend(
    bot: BotUnderTest, fake_slack: FakeSlack, fake_cf: FakeCloudflare, world: World
) -> None:
    request_id = invited_request(bot, fake_slack)
    old_member = stored(bot, request_id).cloudflare_member_id
    bot.clock.advance(timedelta(hours=24, minutes=1))
    sweep(bot)
    sweep(bot)
    nudges = [m.text for m in fake_slack.dms_to(ALICE) if "Reminder: Cloudflare sent an invite" in m.text]
    assert len(nudges) == 1 and "accept it" in nudges[0]
    for _ in range(6):
        bot.clock.advance(timedelta(hours=24))
        sweep(bot)
    nudges = [m.text for m in fake_slack.dms_to(ALICE) if "Reminder: Cloudflare sent an invite" in m.text]
    assert len(nudges) == 7
    root = roots_of(fake_slack, request_id)[0]
    offers = [m for m in fake_slack.thread(root) if "resend_invite" in m.action_ids()]
    assert len(offers) == 1 and f"<@{BOB}>" in offers[0].text
    bot.click(offers[0], "resend_invite", user_id=CAROL)
    new_member = stored(bot, request_id).cloudflare_member_id
    assert new_member and new_member != old_member
    assert fake_cf.calls_to("DELETE", rf"/members/{old_member}$")
    assert [m["id"] for m in fake_cf.members_with_email(world.acme, "alice@example.com")] == [new_member]
    resent = audit_events(bot, request_id)[-1]
    assert resent.event == "invite_resent" and resent.details["old_cloudflare_member_id"] == old_member
    assert "A new Cloudflare invite" in texts(fake_slack.dms_to(ALICE))
    bot.click(offers[0], "resend_invite", user_id=BOB)
    assert "already resent" in fake_slack.responses_for(bot.last_response_id)[-1]["text"]


def test_an_invite_that_disappears_is_confirmed_then_offered_again(
    bot: BotUnderTest, fake_slack: FakeSlack, fake_cf: FakeCloudflare, world: World
) -> None:
    request_id = invited_request(bot, fake_slack)
    member_id = stored(bot, request_id).cloudflare_member_id or ""
    # Missing from a listing but still there: nothing is closed.
    fake_cf.hidden_from_listings.add(member_id)
    bot.clock.advance(timedelta(minutes=6))
    sweep(bot)
    assert stored(bot, request_id).status == "invited"
    assert fake_cf.calls_to("GET", rf"/members/{member_id}$"), "confirmed with GET .../members/{id}"
    # Really gone (expired or cancelled in the dashboard): confirmed by a 404, then offered again.
    fake_cf.hidden_from_listings.clear()
    fake_cf.remove(world.acme, member_id)
    bot.clock.advance(timedelta(minutes=6))
    sweep(bot)
    assert stored(bot, request_id).status == "failed"
    root = roots_of(fake_slack, request_id)[0]
    assert "no longer in Cloudflare" in texts(fake_slack.thread(root))
    assert "no longer valid" in texts(fake_slack.dms_to(ALICE))
    assert audit_names(bot, request_id)[-1] == "invite_revoked"
    root = roots_of(fake_slack, request_id)[0]
    assert "retry_invite" in root.action_ids()
    bot.click(root, "retry_invite", user_id=BOB)
    assert stored(bot, request_id).status == "invited"
    assert len(fake_cf.members_with_email(world.acme, "alice@example.com")) == 1


def test_restart_and_racing_sweepers_send_each_reminder_once(
    make_bot: BotFactory, fake_slack: FakeSlack, world: World
) -> None:
    first = make_bot()
    for n in range(6):
        user = fake_slack.add_user(f"U0RACE00{n}", f"race{n}@example.com", f"race{n}")
        file_request(first, fake_slack, user)
    second = make_bot()  # a restart, or a second replica, on the same database
    for bot in (first, second):
        bot.clock.advance(timedelta(hours=4, minutes=1))
    barrier = threading.Barrier(4)

    def race(bot: BotUnderTest) -> None:
        barrier.wait()
        Sweeper(bot.services).run_once()

    threads = [threading.Thread(target=race, args=(bot,)) for bot in (first, second, first, second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for request_id in range(1, 7):
        assert len(reminders(fake_slack, request_id)) == 2, f"#{request_id}: one reminder per copy"
        assert audit_names(first, request_id).count("reminder_sent") == 1


def test_nothing_due_costs_a_constant_number_of_queries(bot: BotUnderTest, fake_slack: FakeSlack, world: World) -> None:
    now = bot.clock.now()
    rows = [
        dict(
            status=status,
            requester_slack_id=f"UBULK{n}",
            requester_email=f"b{n}@example.com",
            account_id=world.acme,
            account_name="Acme Production",
            requested_role_ids=["r"],
            requested_role_names=["DNS"],
            reason="bulk",
            created_at=now,
            updated_at=now,
            approval_reminder_due_at=now + timedelta(hours=4) if status == "pending" else None,
            expires_at=now + timedelta(days=7) if status == "pending" else None,
            invite_check_due_at=now + timedelta(minutes=5) if status == "invited" else None,
        )
        for n in range(3000)
        for status in [("pending", "invited", "denied")[n % 3]]
    ]
    with bot.db.session() as session:
        session.execute(insert(AccessRequest), rows)
    statements: list[str] = []

    def count(*args: object) -> None:
        statements.append(str(args[2]))

    event.listen(bot.db.engine, "before_cursor_execute", count)
    try:
        sweep(bot)
    finally:
        event.remove(bot.db.engine, "before_cursor_execute", count)
    selects = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
    # One bounded query per sweep step with nothing to do (expiry, reminders, invites, follow-up,
    # end warnings, removals, holder re-checks, Slack repair), whatever the number of stored rows.
    assert len(selects) <= 9, selects
    assert all("LIMIT" in s.upper() for s in selects), "every sweep query is bounded"


def test_serving_process_runs_the_sweeps(
    make_bot: BotFactory, fake_slack: FakeSlack, fake_cf: FakeCloudflare, world: World
) -> None:
    """End to end with the real clock: SCHEDULER_INTERVAL=1s and second-scale durations."""
    bot = make_bot(
        clock=SystemClock(),
        run_scheduler=True,
        scheduler_interval="1s",
        approval_reminder_after="1s",
        request_expires_after="4s",
        directory_cache_ttl="1s",
    )
    invited = invited_request(bot, fake_slack)
    waiting = file_request(bot, fake_slack, CAROL, 'request "Acme Staging" DNS staging')
    fake_cf.accept(world.acme, stored(bot, invited).cloudflare_member_id or "")
    assert fake_slack.wait_until(
        lambda: "accepted the invite" in texts(fake_slack.thread(roots_of(fake_slack, invited)[0])), timeout=10
    )
    assert fake_slack.wait_until(lambda: len(reminders(fake_slack, waiting)) >= 1, timeout=10)
    assert fake_slack.wait_until(lambda: "expired" in texts(fake_slack.dms_to(CAROL)), timeout=15)
    assert stored(bot, waiting).status == "expired" and stored(bot, invited).status == "accepted"


def test_old_event_ids_are_forgotten(bot: BotUnderTest, world: World) -> None:
    from storage.repository import remember_event

    with bot.db.session() as session:
        assert remember_event(session, "Ev0OLD", now=bot.clock.now())
    sweep(bot)
    with bot.db.session() as session:
        assert not remember_event(session, "Ev0OLD", now=bot.clock.now()), "kept within Slack's retry window"
    bot.clock.advance(timedelta(days=2))
    sweep(bot)
    with bot.db.session() as session:
        assert remember_event(session, "Ev0OLD", now=bot.clock.now())
