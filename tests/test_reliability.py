"""Races, faults and restarts (the Reliability issue): one decision, one invite, nobody left
uninformed, on SQLite and PostgreSQL."""

from __future__ import annotations

import copy
import threading
import time
from datetime import timedelta

from slack_sdk.http_retry import FixedValueRetryIntervalCalculator

from bot.ops.scheduler import Sweeper
from storage.db import Database
from storage.migrate import upgrade
from tests.conftest import ALICE, BOB, CAROL, MALLORY, BotFactory, World
from tests.fakes.cloudflare import FakeCloudflare, Fault
from tests.fakes.slack import FakeSlack, SlackFault
from tests.harness import BotUnderTest
from tests.helpers import audit_names, file_request, roots_of, stored, texts


def approve(bot: BotUnderTest, fake_slack: FakeSlack, request_id: int) -> None:
    bot.click(roots_of(fake_slack, request_id)[0], "request_approve", user_id=BOB)


def assert_invited_once(
    bot: BotUnderTest, fake_slack: FakeSlack, fake_cf: FakeCloudflare, world: World, request_id: int
) -> None:
    members = fake_cf.members_with_email(world.acme, "alice@example.com")
    assert len(members) == 1, "exactly one member"
    request = stored(bot, request_id)
    assert (request.status, request.cloudflare_member_id) == ("invited", members[0]["id"])
    assert "Your request #1 was approved" in texts(fake_slack.dms_to(ALICE))


def test_concurrent_clicks_make_one_decision_and_one_invite(
    bot: BotUnderTest, fake_slack: FakeSlack, fake_cf: FakeCloudflare, world: World
) -> None:
    request_id = file_request(bot, fake_slack, ALICE)
    copies = [copy.deepcopy(root) for root in roots_of(fake_slack, request_id)]
    clickers = [(copies[n % 2], (BOB, CAROL)[n % 2]) for n in range(12)]
    barrier = threading.Barrier(len(clickers))

    def click(message: object, user: str) -> None:
        barrier.wait()
        bot.click(message, "request_approve", user_id=user, wait=False)  # type: ignore[arg-type]

    threads = [threading.Thread(target=click, args=pair) for pair in clickers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    bot.wait_idle()
    assert len(fake_cf.calls_to("POST", r"/members$")) == 1
    assert audit_names(bot, request_id).count("approved") == 1
    winner = stored(bot, request_id).decided_by_slack_id
    told = [r["text"] for r in fake_slack.responses if "already approved" in r.get("text", "")]
    assert len(told) == len(clickers) - 1 and all(f"<@{winner}>" in text for text in told)
    assert_invited_once(bot, fake_slack, fake_cf, world, request_id)


def test_cloudflare_429_reschedules_the_invite_to_retry_after(
    bot: BotUnderTest, fake_slack: FakeSlack, fake_cf: FakeCloudflare, world: World
) -> None:
    """A 429 is never slept on: the attempt is counted, the invite is due again when Retry-After
    ends, the lease is released, and the sweep sends it then."""
    request_id = file_request(bot, fake_slack, ALICE)
    fake_cf.inject(Fault("POST", r"/members$", status=429, headers={"Retry-After": "3"}, times=2))
    approved_at = bot.clock.now()
    approve(bot, fake_slack, request_id)
    assert bot.sleep.waits == [], "nothing slept on the Retry-After"
    assert len(fake_cf.calls_to("POST", r"/members$")) == 1
    request = stored(bot, request_id)
    assert (request.status, request.invite_attempts, request.invite_lease_until) == ("approved", 1, None)
    assert request.invite_due_at == approved_at + timedelta(seconds=3), "Retry-After honoured"
    bot.clock.advance(timedelta(seconds=2))
    Sweeper(bot.services).run_once()
    assert len(fake_cf.calls_to("POST", r"/members$")) == 1, "not before Retry-After ends"
    bot.clock.advance(timedelta(seconds=1))
    Sweeper(bot.services).run_once()
    assert len(fake_cf.calls_to("POST", r"/members$")) == 2
    assert stored(bot, request_id).invite_due_at == bot.clock.now() + timedelta(seconds=3)
    bot.clock.advance(timedelta(seconds=3))
    Sweeper(bot.services).run_once()
    assert len(fake_cf.calls_to("POST", r"/members$")) == 3
    assert_invited_once(bot, fake_slack, fake_cf, world, request_id)
    assert sum("Cloudflare has sent an invite" in dm.text for dm in fake_slack.dms_to(ALICE)) == 1, "told once"
    assert bot.sleep.waits == []


def test_429_attempts_are_bounded_per_run(
    make_bot: BotFactory, fake_slack: FakeSlack, fake_cf: FakeCloudflare, world: World
) -> None:
    """INVITE_MAX_ATTEMPTS bounds each run (the approval, then each Retry invite), across reschedules."""
    bot = make_bot(invite_max_attempts=3)
    request_id = file_request(bot, fake_slack, ALICE)
    fake_cf.inject(Fault("POST", r"/members$", status=429, headers={"Retry-After": "3"}, times=4))
    approve(bot, fake_slack, request_id)
    for _ in range(2):
        assert stored(bot, request_id).status == "approved"
        bot.clock.advance(timedelta(seconds=3))
        Sweeper(bot.services).run_once()
    request = stored(bot, request_id)
    assert len(fake_cf.calls_to("POST", r"/members$")) == 3
    assert request.status == "failed" and "after 3 attempts" in (request.invite_error or "")
    assert sum("could not be sent" in dm.text for dm in fake_slack.dms_to(ALICE)) == 1
    # Retry invite (once the pause is over) starts a new run with its own budget: one more 429
    # reschedules the invite, it does not fail it.
    bot.clock.advance(timedelta(seconds=3))
    bot.click(roots_of(fake_slack, request_id)[0], "retry_invite", user_id=CAROL)
    assert stored(bot, request_id).status == "approved"
    bot.clock.advance(timedelta(seconds=3))
    Sweeper(bot.services).run_once()
    assert len(fake_cf.calls_to("POST", r"/members$")) == 5
    assert_invited_once(bot, fake_slack, fake_cf, world, request_id)
    assert bot.sleep.waits == []


def test_cloudflare_500_then_success_checks_before_resending(
    bot: BotUnderTest, fake_slack: FakeSlack, fake_cf: FakeCloudflare, world: World
) -> None:
    request_id = file_request(bot, fake_slack, ALICE)
    fake_cf.inject(Fault("POST", r"/members$", status=500))
    lists_before = len(fake_cf.calls_to("GET", r"/members$"))
    approve(bot, fake_slack, request_id)
    assert len(fake_cf.calls_to("POST", r"/members$")) == 2
    assert len(fake_cf.calls_to("GET", r"/members$")) > lists_before, "the member list was read before re-sending"
    assert bot.sleep.waits == [], "re-checked at once, never slept on"
    assert_invited_once(bot, fake_slack, fake_cf, world, request_id)


def test_answer_lost_after_the_member_was_created_is_adopted(
    make_bot: BotFactory, fake_slack: FakeSlack, fake_cf: FakeCloudflare, world: World
) -> None:
    bot = make_bot(cloudflare_timeout=0.5)
    request_id = file_request(bot, fake_slack, ALICE)
    fake_cf.inject(Fault("POST", r"/members$", status=200, delay=1.5, after_effect=True))
    approve(bot, fake_slack, request_id)
    assert len(fake_cf.calls_to("POST", r"/members$")) == 1, "no second POST after an ambiguous timeout"
    assert_invited_once(bot, fake_slack, fake_cf, world, request_id)
    assert "invite_adopted" in audit_names(bot, request_id)


def test_dropped_connection_after_effect_is_adopted(
    bot: BotUnderTest, fake_slack: FakeSlack, fake_cf: FakeCloudflare, world: World
) -> None:
    request_id = file_request(bot, fake_slack, ALICE)
    fake_cf.inject(Fault("POST", r"/members$", drop=True, after_effect=True))
    approve(bot, fake_slack, request_id)
    assert len(fake_cf.calls_to("POST", r"/members$")) == 1
    assert_invited_once(bot, fake_slack, fake_cf, world, request_id)


def test_dropped_connection_before_effect_is_resent(
    bot: BotUnderTest, fake_slack: FakeSlack, fake_cf: FakeCloudflare, world: World
) -> None:
    request_id = file_request(bot, fake_slack, ALICE)
    fake_cf.inject(Fault("POST", r"/members$", drop=True))
    approve(bot, fake_slack, request_id)
    assert len(fake_cf.calls_to("POST", r"/members$")) == 2
    assert_invited_once(bot, fake_slack, fake_cf, world, request_id)


def test_attempts_are_bounded_then_failed_with_retry(
    make_bot: BotFactory, fake_slack: FakeSlack, fake_cf: FakeCloudflare, world: World
) -> None:
    bot = make_bot(invite_max_attempts=3)
    request_id = file_request(bot, fake_slack, ALICE)
    fake_cf.inject(Fault("POST", r"/members$", status=503, times=3))
    approve(bot, fake_slack, request_id)
    # One re-check at once, then backoff by rescheduling: never a sleep on a worker.
    assert len(fake_cf.calls_to("POST", r"/members$")) == 2
    request = stored(bot, request_id)
    assert request.status == "approved" and request.invite_due_at is not None
    assert request.invite_due_at > bot.clock.now() and request.invite_lease_until is None
    bot.clock.advance(timedelta(minutes=1))
    Sweeper(bot.services).run_once()
    assert len(fake_cf.calls_to("POST", r"/members$")) == 3
    request = stored(bot, request_id)
    assert request.status == "failed" and "after 3 attempts" in (request.invite_error or "")
    root = roots_of(fake_slack, request_id)[0]
    assert root.action_ids() == ["retry_invite"]
    assert "could not be sent" in texts(fake_slack.dms_to(ALICE))
    bot.click(root, "retry_invite", user_id=CAROL)
    assert stored(bot, request_id).status == "invited"
    assert len(fake_cf.members_with_email(world.acme, "alice@example.com")) == 1
    assert bot.sleep.waits == []


def test_slack_429_on_post_message_is_retried(bot: BotUnderTest, fake_slack: FakeSlack, world: World) -> None:
    fake_slack.inject(SlackFault("chat.postMessage", status=429, retry_after=1, times=1))
    request_id = file_request(bot, fake_slack, ALICE)
    roots = roots_of(fake_slack, request_id)
    assert {root.channel for root in roots} == {fake_slack.dm_channel(BOB), fake_slack.dm_channel(CAROL)}


def test_failed_root_update_is_repaired_by_the_sweep(
    bot: BotUnderTest, fake_slack: FakeSlack, fake_cf: FakeCloudflare, world: World
) -> None:
    request_id = file_request(bot, fake_slack, ALICE)
    fake_slack.inject(SlackFault("chat.update", status=200, error="internal_error", times=100))
    approve(bot, fake_slack, request_id)
    assert stored(bot, request_id).status == "invited", "a failed chat.update never loses the decision"
    assert all(root.action_ids() == ["request_approve", "request_deny"] for root in roots_of(fake_slack, request_id))
    assert stored(bot, request_id).slack_sync_due_at is not None
    fake_slack.faults.clear()
    bot.clock.advance(timedelta(minutes=2))
    report = Sweeper(bot.services).run_once()
    assert report.roots_repaired == 1
    for root in roots_of(fake_slack, request_id):
        assert not {"request_approve", "request_deny"} & set(root.action_ids()) and "Invite sent" in root.all_text()
    assert stored(bot, request_id).slack_sync_due_at is None


def test_slack_dropping_root_updates_still_tells_people_and_is_repaired(
    bot: BotUnderTest, fake_slack: FakeSlack, fake_cf: FakeCloudflare, world: World
) -> None:
    """Every `chat.update` has its connection closed with no answer (retries too): the roots are
    left to the sweep, and the thread reply and the requester's DM still go out."""
    request_id = file_request(bot, fake_slack, ALICE)
    for handler in bot.services.slack.client.retry_handlers:  # retried at once: no real backoff sleeps
        handler.interval_calculator = FixedValueRetryIntervalCalculator(0)
    fake_slack.inject(SlackFault("chat.update", drop=True, times=100))
    approve(bot, fake_slack, request_id)
    assert stored(bot, request_id).status == "invited"
    assert len(fake_slack.calls_to("chat.update")) >= 2 * 3, "each root's update was tried again"
    for root in roots_of(fake_slack, request_id):
        assert root.action_ids() == ["request_approve", "request_deny"]
        assert "Invite sent" in texts(fake_slack.thread(root))
    assert any("Cloudflare has sent an invite" in dm.text for dm in fake_slack.dms_to(ALICE))
    assert stored(bot, request_id).slack_sync_due_at is not None
    fake_slack.faults.clear()
    bot.clock.advance(timedelta(minutes=2))
    assert Sweeper(bot.services).run_once().roots_repaired == 1
    for root in roots_of(fake_slack, request_id):
        assert root.action_ids() == ["revoke_access"] and "Invite sent" in root.all_text()


def test_a_thread_reply_lost_on_the_way_does_not_keep_the_requester_untold(
    bot: BotUnderTest, fake_slack: FakeSlack, fake_cf: FakeCloudflare, world: World
) -> None:
    """The decision's thread reply gets no answer (the connection closes after Slack took it): it is
    not posted again, and the requester's DM still goes out."""
    request_id = file_request(bot, fake_slack, ALICE)
    roots = roots_of(fake_slack, request_id)
    fake_slack.inject(SlackFault("chat.postMessage", drop=True, after_effect=True))
    approve(bot, fake_slack, request_id)
    assert stored(bot, request_id).status == "invited"
    for root in roots:
        replies = [m.text for m in fake_slack.thread(root)]
        assert [sum(what in text for text in replies) for what in ("Approved by", "Invite sent")] == [1, 1], replies
    told = [dm.text for dm in fake_slack.dms_to(ALICE)]
    assert [sum(what in text for text in told) for what in ("was approved by", "sent an invite")] == [1, 1], told


def test_unsent_invites_resume_at_start_up(
    make_bot: BotFactory, fake_slack: FakeSlack, fake_cf: FakeCloudflare, world: World
) -> None:
    bot = make_bot()
    request_id = file_request(bot, fake_slack, ALICE)
    # The approval is committed, then the process dies before any Cloudflare call.
    from storage.repository import transition
    from storage.states import RequestStatus

    with bot.db.session() as session:
        assert transition(
            session,
            request_id,
            RequestStatus.APPROVED,
            now=bot.clock.now(),
            decided_by_slack_id=BOB,
            decided_at=bot.clock.now(),
            granted_role_ids=stored(bot, request_id).requested_role_ids,
            granted_role_names=["DNS"],
            invite_due_at=bot.clock.now(),
        )
    assert not fake_cf.calls_to("POST", r"/members$")
    restarted = make_bot()
    restarted.wait_idle()
    assert len(fake_cf.calls_to("POST", r"/members$")) == 1
    assert stored(restarted, request_id).status == "invited"
    assert "Invite sent" in texts(fake_slack.thread(roots_of(fake_slack, request_id)[0]))


def test_concurrent_migrations(database_url: str) -> None:
    errors: list[BaseException] = []
    barrier = threading.Barrier(3)

    def migrate() -> None:
        database = Database.from_url(database_url)
        barrier.wait()
        try:
            upgrade(database.engine)
        except BaseException as error:  # reported below
            errors.append(error)
        finally:
            database.engine.dispose()

    threads = [threading.Thread(target=migrate) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []


def _block_the_cloudflare_pool(bot: BotUnderTest) -> threading.Event:
    """Occupy every worker of the bot's Cloudflare pool until the returned event is set."""
    gate = threading.Event()
    pool = bot.services.cloudflare_executor
    for _ in range(pool._max_workers):
        pool.submit(gate.wait, 30)
    return gate


def _wait_for_status(bot: BotUnderTest, request_id: int, status: str) -> None:
    deadline = time.monotonic() + 10
    while stored(bot, request_id).status != status:
        assert time.monotonic() < deadline, f"#{request_id} never became {status}"
        time.sleep(0.01)


def test_an_invite_waiting_its_turn_in_the_pool_is_left_to_it_by_the_invite_poll(
    make_bot: BotFactory, fake_slack: FakeSlack, fake_cf: FakeCloudflare, world: World
) -> None:
    """The approval takes the invite's lease in its own write, so the invite poll (this process's
    or a replica's) leaves alone an invite queued behind others in the Cloudflare pool: it is sent
    once, from the pool, and the approval and its outcome are told as one. Should it wait past the
    lease, the poll takes it over and the queued turn, finding the lease gone, sends nothing."""
    bot = make_bot(root_refresh_delay=10)
    request_id = file_request(bot, fake_slack, ALICE)
    gate = _block_the_cloudflare_pool(bot)
    bot.click(roots_of(fake_slack, request_id)[0], "request_approve", user_id=BOB, wait=False)
    _wait_for_status(bot, request_id, "approved")
    assert bot.services.outbox.send_due() == 0, "the poll leaves a queued invite to its pool"
    assert Sweeper(bot.services).run_once().invites_sent == 0
    assert fake_cf.calls_to("POST", r"/members$") == []
    gate.set()
    bot.wait_idle()
    assert len(fake_cf.calls_to("POST", r"/members$")) == 1
    assert (stored(bot, request_id).status, stored(bot, request_id).invite_attempts) == ("invited", 1)
    for root in roots_of(fake_slack, request_id):
        [reply] = fake_slack.thread(root)
        assert f"Approved by <@{BOB}>" in reply.text and "Invite sent to alice@example.com" in reply.text
    assert audit_names(bot, request_id).count("invite_sent") == 1

    late = file_request(bot, fake_slack, MALLORY)
    gate = _block_the_cloudflare_pool(bot)
    bot.click(roots_of(fake_slack, late)[0], "request_approve", user_id=BOB, wait=False)
    _wait_for_status(bot, late, "approved")
    bot.clock.advance(bot.services.outbox.lease_hold + timedelta(seconds=1))
    assert bot.services.outbox.send_due() == 1, "a lease run out is taken over"
    taken_over = stored(bot, late)
    assert taken_over.status != "approved" and taken_over.invite_attempts == 1, "sent by the poll, counted once"
    gate.set()
    bot.wait_idle()
    assert len(fake_cf.members_with_email(world.acme, "mallory@example.com")) == 1
    assert len(fake_cf.calls_to("POST", r"/members$")) == 2, "the queued turn sent nothing"
    assert audit_names(bot, late).count("invite_sent") == 1
    for root in roots_of(fake_slack, late):
        assert ["Invite sent to mallory@example.com" in m.text for m in fake_slack.thread(root)] == [True]
