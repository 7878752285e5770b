"""Separate bot processes on one database: racing replicas, and SIGKILL between approval and invite."""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import create_engine, text

from bot.core.clock import SystemClock
from bot.ops.scheduler import Sweeper
from tests.conftest import ALICE, BOB, CAROL, BotFactory, World
from tests.fakes.cloudflare import FakeCloudflare, Fault
from tests.fakes.slack import FakeSlack, SlackFault
from tests.helpers import answer, audit_names, file_request, roots_of, stored, texts
from tests.process import BotProcess, bot_env


def wait_for(condition: Callable[[], bool], timeout: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def request_status(database_url: str, request_id: int) -> str | None:
    engine = create_engine(database_url.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        with engine.connect() as connection:
            return connection.execute(
                text("SELECT status FROM access_requests WHERE id = :id"), {"id": request_id}
            ).scalar()
    finally:
        engine.dispose()


def file_via(replica: BotProcess, fake_slack: FakeSlack) -> None:
    replica.command('request "Acme Production" DNS replica test', user_id=ALICE)
    wait_for(lambda: len(roots_of(fake_slack, 1)) == 2, what="the request to reach both approvers")


def test_two_replicas_racing_approve_clicks(
    fake_slack: FakeSlack, fake_cf: FakeCloudflare, world: World, database_url: str, tmp_path: Path
) -> None:
    env = bot_env(fake_slack, fake_cf, database_url)
    with (
        BotProcess(env, tmp_path / "a.log").start() as replica_a,
        BotProcess(env, tmp_path / "b.log").start() as replica_b,
    ):
        for replica in (replica_a, replica_b):
            replica.attach(fake_slack)
        file_via(replica_a, fake_slack)
        copies = [copy.deepcopy(root) for root in roots_of(fake_slack, 1)]
        barrier = threading.Barrier(8)
        statuses: list[int] = []

        def click(n: int) -> None:
            replica = (replica_a, replica_b)[n % 2]
            barrier.wait()
            response = replica.click(copies[n % 2], "request_approve", user_id=(BOB, CAROL)[n % 2])
            statuses.append(response.status_code)

        threads = [threading.Thread(target=click, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert statuses == [200] * 8
        wait_for(lambda: request_status(database_url, 1) == "invited", what="the invite")
        wait_for(
            lambda: len([r for r in fake_slack.responses if "already approved" in r.get("text", "")]) == 7,
            what="the seven later clickers to be told",
        )
        assert len(fake_cf.calls_to("POST", r"/members$")) == 1
        assert len(fake_cf.members_with_email(world.acme, "alice@example.com")) == 1
        assert replica_a.healthy() and replica_b.healthy()


def _sigkill_during(
    call: Fault, fake_slack: FakeSlack, fake_cf: FakeCloudflare, world: World, database_url: str, tmp_path: Path
) -> None:
    env = bot_env(fake_slack, fake_cf, database_url, INVITE_LEASE="2s", SCHEDULER_INTERVAL="1s")
    first = BotProcess(env, tmp_path / "first.log").start()
    first.attach(fake_slack)
    try:
        file_via(first, fake_slack)
        seen = len(fake_cf.calls_to(call.method, call.path_pattern))
        fake_cf.inject(call)
        first.click(roots_of(fake_slack, 1)[0], "request_approve", user_id=BOB)
        fake_cf.wait_for_call(call.method, call.path_pattern, count=seen + 1)
        assert request_status(database_url, 1) == "approved", "the approval is durable before Cloudflare answers"
        killed_at = time.monotonic()
        first.kill()
    finally:
        first.stop()
    with BotProcess(env, tmp_path / "second.log").start():
        wait_for(lambda: request_status(database_url, 1) == "invited", what="the resumed invite")
        print(
            f"\ninvite finished {time.monotonic() - killed_at:.2f} s after SIGKILL (INVITE_LEASE 2s, restart included)"
        )
        # The approval's own DM was held for the outcome and died with the first process; the
        # outcome, from the second, says both that the request was approved and what to do next.
        wait_for(
            lambda: "approved" in texts(fake_slack.dms_to(ALICE)) and "accept" in texts(fake_slack.dms_to(ALICE)),
            what="the requester to be told",
        )
    assert len(fake_cf.members_with_email(world.acme, "alice@example.com")) == 1


def test_sigkill_while_cloudflare_creates_the_member(
    fake_slack: FakeSlack, fake_cf: FakeCloudflare, world: World, database_url: str, tmp_path: Path
) -> None:
    """Killed after Cloudflare created the member but before its answer: adopted, not invited twice."""
    _sigkill_during(
        Fault("POST", r"/members$", status=200, delay=30, after_effect=True),
        fake_slack,
        fake_cf,
        world,
        database_url,
        tmp_path,
    )
    assert len(fake_cf.calls_to("POST", r"/members$")) == 1


def test_sigkill_before_the_invite_is_sent(
    fake_slack: FakeSlack, fake_cf: FakeCloudflare, world: World, database_url: str, tmp_path: Path
) -> None:
    """Killed while the invite hangs before Cloudflare acted: resumed, checked, and sent exactly once."""
    _sigkill_during(
        Fault("POST", r"/members$", status=500, delay=30), fake_slack, fake_cf, world, database_url, tmp_path
    )
    assert len(fake_cf.calls_to("POST", r"/members$")) == 2, "the lost POST, then the one that created the member"


def test_a_running_replica_takes_over_a_crashed_holders_invite_within_the_lease(
    fake_slack: FakeSlack, fake_cf: FakeCloudflare, world: World, database_url: str, tmp_path: Path
) -> None:
    """The holder renews its lease while its POST hangs longer than INVITE_LEASE, so the other
    replica keeps off; once the holder is SIGKILLed the other takes the invite over within
    INVITE_LEASE, with the sweep (SCHEDULER_INTERVAL) still minutes away.

    The other replica starts once the holder's POST is out: started earlier, its own invite poll
    may win the race for the fresh approval, and then the "holder" killed would hold nothing."""
    lease = 4.0
    env = bot_env(fake_slack, fake_cf, database_url, INVITE_LEASE="4s", CLOUDFLARE_TIMEOUT="40")
    holder = BotProcess(env, tmp_path / "holder.log").start()
    holder.attach(fake_slack)
    try:
        file_via(holder, fake_slack)
        fake_cf.inject(Fault("POST", r"/members$", status=500, delay=30))
        holder.click(roots_of(fake_slack, 1)[0], "request_approve", user_id=BOB)
        fake_cf.wait_for_call("POST", r"/members$")
        survivor = BotProcess(env, tmp_path / "survivor.log").start()
    except BaseException:
        holder.stop()
        raise
    with survivor:
        try:
            time.sleep(lease + 1)
            assert len(fake_cf.calls_to("POST", r"/members$")) == 1, "the live holder's lease never lapsed"
            killed_at = time.monotonic()
            holder.kill()
        finally:
            holder.stop()
        posts = fake_cf.wait_for_call("POST", r"/members$", count=2, timeout=lease + 10)
        assert len(posts) == 2, f"no replica took the invite over:\n{survivor.log_tail()}"
        took = posts[1].received_at - killed_at
        print(f"\ninvite taken over by a running replica {took:.2f} s after SIGKILL (INVITE_LEASE {lease:.0f}s)")
        assert took <= lease, f"taken over after {took:.2f} s"
        wait_for(lambda: request_status(database_url, 1) == "invited", what="the invite")
    assert len(fake_cf.members_with_email(world.acme, "alice@example.com")) == 1


def test_the_lease_never_lapses_while_its_holder_is_mid_post(
    make_bot: BotFactory, fake_slack: FakeSlack, fake_cf: FakeCloudflare, world: World
) -> None:
    """INVITE_LEASE 3 s, a POST that takes 4 s, and a second replica sweeping all along: the holder
    renews its lease, so the other never takes the invite over. One POST, one member, one "sent"."""
    holder = make_bot(clock=SystemClock(), invite_lease="3s", cloudflare_timeout=10)
    other = make_bot(clock=SystemClock(), invite_lease="3s", cloudflare_timeout=10)
    request_id = file_request(holder, fake_slack, ALICE)
    fake_cf.inject(Fault("POST", r"/members$", status=200, delay=4, after_effect=True))
    holder.click(roots_of(fake_slack, request_id)[0], "request_approve", user_id=BOB, wait=False)
    fake_cf.wait_for_call("POST", r"/members$")
    sweeps = 0
    while (request := stored(other, request_id)).status == "approved":
        lease_until = request.invite_lease_until
        assert lease_until is not None and lease_until > datetime.now(UTC), "the lease lapsed mid-POST"
        Sweeper(other.services).run_once()
        sweeps += 1
        time.sleep(0.05)
    holder.wait_idle()
    other.wait_idle()
    assert sweeps >= 10, "the other replica swept while the POST was in flight"
    assert len(fake_cf.calls_to("POST", r"/members$")) == 1
    assert len(fake_cf.members_with_email(world.acme, "alice@example.com")) == 1
    assert audit_names(holder, request_id).count("invite_sent") == 1
    assert "invite_adopted" not in audit_names(holder, request_id), "the other replica never took it over"
    assert sum("Cloudflare has sent an invite" in dm.text for dm in fake_slack.dms_to(ALICE)) == 1


def test_a_replica_whose_drawing_lands_after_a_newer_one_draws_again(
    make_bot: BotFactory, fake_slack: FakeSlack, world: World
) -> None:
    """Replica A reads the request as pending and Slack holds its `chat.update`; meanwhile the
    requester cancels through replica B, which draws the cancellation. A's pending drawing then
    lands on top of it: A sees the request has moved on and draws it again, so no approver is
    left looking at Approve / Deny on a cancelled request."""
    replica_a, replica_b = make_bot(), make_bot()
    request_id = file_request(replica_a, fake_slack, ALICE)
    roots = roots_of(fake_slack, request_id)
    assert len(roots) == 2
    updates = len(fake_slack.calls_to("chat.update"))
    slack_holds = threading.Event()
    # Held until B has drawn; under the Slack client's 10 s timeout, past which A would give up.
    fake_slack.inject(SlackFault(method="chat.update", slow=True, delay=8, until=slack_holds))
    drawing = threading.Thread(
        target=replica_a.services.notifier.refresh_roots, args=(request_id,), kwargs={"state_changed": False}
    )
    drawing.start()
    try:
        assert fake_slack.wait_until(lambda: len(fake_slack.calls_to("chat.update")) == updates + 1)
        assert "cancelled" in answer(replica_b, fake_slack, f"cancel {request_id}", ALICE)
        replica_b.wait_idle()
        assert all("Cancelled" in root.all_text() for root in roots_of(fake_slack, request_id))
    finally:
        slack_holds.set()
    drawing.join(30)
    assert not drawing.is_alive()
    for root in roots_of(fake_slack, request_id):
        assert root.action_ids() == [], root.all_text()
        assert "Cancelled" in root.all_text()
