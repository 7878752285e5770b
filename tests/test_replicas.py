"""Separate bot processes on one database: racing replicas, and SIGKILL between approval and invite."""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import create_engine, text

from tests.conftest import ALICE, BOB, CAROL, World
from tests.fakes.cloudflare import FakeCloudflare, Fault
from tests.fakes.slack import FakeSlack
from tests.helpers import roots_of, texts
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
        first.kill()
    finally:
        first.stop()
    with BotProcess(env, tmp_path / "second.log").start():
        wait_for(lambda: request_status(database_url, 1) == "invited", what="the resumed invite")
        wait_for(
            lambda: "approved" in texts(fake_slack.dms_to(ALICE)) and "invite" in texts(fake_slack.dms_to(ALICE)),
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
