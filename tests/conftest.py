"""Fixtures: the fake Slack and Cloudflare, a database per test (SQLite, and a scratch PostgreSQL
database when TEST_DATABASE_URL names a server, see tests/pg.py), and the bot served over loopback."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.fakes.cloudflare import (
    ADMIN,
    ADMIN_RO,
    BILLING,
    CACHE_PURGE,
    DNS,
    PG_ADMIN,
    PG_ADMIN_RO,
    PG_BILLING,
    PG_DNS,
    PG_DOMAIN_DNS,
    PG_SUPER_ADMIN,
    SUPER_ADMIN,
    FakeCloudflare,
)
from tests.fakes.slack import FakeSlack
from tests.harness import CF_TOKEN, BotUnderTest, bot_settings
from tests.pg import scratch_database, server_url

ALICE = "U0ALICE001"
BOB = "U0BOB00001"
CAROL = "U0CAROL001"
DAVE = "U0DAVE0001"
MALLORY = "U0MALLORY1"
NOEMAIL = "U0NOMAIL01"
OUTSIDER = "U0OUTSIDE1"
FALLBACK = "U0FALLBK01"

DB_BACKENDS = ["sqlite"] + (["postgresql"] if server_url() else [])


@dataclass
class World:
    acme: str
    staging: str
    orange: str
    bob_member: str


@pytest.fixture(params=DB_BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[str]:
    """A fresh, empty database; on PostgreSQL a scratch database dropped after the test, so the
    database TEST_DATABASE_URL names (and anything else on that server) is never written to."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/cf-access-bot.db"
        return
    server = server_url()
    assert server is not None
    with scratch_database(server) as url:
        yield url


@pytest.fixture
def fake_slack() -> Iterator[FakeSlack]:
    slack = FakeSlack().start()
    slack.add_user(ALICE, "alice@example.com", "alice")
    slack.add_user(BOB, "bob@example.com", "bob")
    slack.add_user(CAROL, "Carol@Example.com", "carol")
    slack.add_user(DAVE, "dave@example.com", "dave")
    slack.add_user(MALLORY, "mallory@example.com", "mallory")
    slack.add_user(NOEMAIL, None, "noemail")
    slack.add_user(OUTSIDER, "alice@gmail.com", "outsider")
    slack.add_user(FALLBACK, "fallback@example.com", "fallback")
    yield slack
    slack.stop()


@pytest.fixture
def fake_cf() -> Iterator[FakeCloudflare]:
    cloudflare = FakeCloudflare(token=CF_TOKEN).start()
    yield cloudflare
    cloudflare.stop()
    assert cloudflare.schema_violations == [], "the bot sent Cloudflare a body its OpenAPI schema rejects"


@pytest.fixture
def world(fake_cf: FakeCloudflare) -> World:
    acme = fake_cf.add_account("Acme Production")
    staging = fake_cf.add_account("Acme Staging")
    orange = fake_cf.add_account("Orange Cloud")
    bob_member = fake_cf.add_member(acme, "bob@example.com", [SUPER_ADMIN["id"]])
    fake_cf.add_member(acme, "carol@example.com", [SUPER_ADMIN["id"], ADMIN["id"]])
    fake_cf.add_member(acme, "dave@example.com", [SUPER_ADMIN["id"]], status="pending")
    fake_cf.add_member(staging, "carol@example.com", [SUPER_ADMIN["id"]])
    fake_cf.add_member(orange, "erin@example.com", [SUPER_ADMIN["id"]])
    # Enough members to make the list span several pages of 50.
    for n in range(120):
        fake_cf.add_member(acme, f"engineer{n}@example.com", [DNS["id"]])
    # Real listings are untidy: a status the bot does not know, a null user, an item it cannot read.
    fake_cf.add_member(acme, "contractor@example.com", [DNS["id"]], status="suspended")
    odd = fake_cf.add_member(acme, "nouser@example.com", [DNS["id"]])
    fake_cf.accounts[acme]["members"][odd]["user"] = None
    fake_cf.add_raw_member(acme, {"status": "accepted", "roles": None, "user": {"email": None}})
    return World(acme, staging, orange, bob_member)


BotFactory = Callable[..., BotUnderTest]


@pytest.fixture
def make_bot(fake_slack: FakeSlack, fake_cf: FakeCloudflare, world: World, database_url: str) -> Iterator[BotFactory]:
    started: list[BotUnderTest] = []

    def factory(*, clock: Any = None, run_scheduler: bool = False, **overrides: Any) -> BotUnderTest:
        settings = bot_settings(fake_slack, fake_cf, database_url, **overrides)
        bot = BotUnderTest(settings, clock=clock, run_scheduler=run_scheduler)
        bot.attach(fake_slack)
        started.append(bot.start())
        return bot

    yield factory
    for bot in started:
        bot.stop()
    assert fake_slack.errors == [], "the bot sent Slack something Slack would refuse"


@pytest.fixture
def bot(make_bot: BotFactory) -> BotUnderTest:
    return make_bot()


ROLE_IDS = {
    "admin": ADMIN["id"],
    "admin_ro": ADMIN_RO["id"],
    "billing": BILLING["id"],
    "dns": DNS["id"],
    "cache": CACHE_PURGE["id"],
    "super": SUPER_ADMIN["id"],
}
# The same as permission groups: what the bot grants where an account speaks policies (the fake's
# accounts do unless a test says otherwise, and CLOUDFLARE_ACCESS_MODEL defaults to `auto`).
PG_IDS = {
    "admin": PG_ADMIN["id"],
    "admin_ro": PG_ADMIN_RO["id"],
    "billing": PG_BILLING["id"],
    "dns": PG_DNS["id"],
    "domain_dns": PG_DOMAIN_DNS["id"],
    "super": PG_SUPER_ADMIN["id"],
}
