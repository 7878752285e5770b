"""Fixtures: the fake Slack and Cloudflare, a database per test (SQLite, and PostgreSQL when
TEST_DATABASE_URL is set), and the bot served over loopback."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import text

from storage.db import make_engine
from tests.fakes.cloudflare import ADMIN, ADMIN_RO, BILLING, CACHE_PURGE, DNS, SUPER_ADMIN, FakeCloudflare
from tests.fakes.slack import FakeSlack
from tests.harness import CF_TOKEN, BotUnderTest, bot_settings

ALICE = "U0ALICE001"
BOB = "U0BOB00001"
CAROL = "U0CAROL001"
DAVE = "U0DAVE0001"
MALLORY = "U0MALLORY1"
NOEMAIL = "U0NOMAIL01"
OUTSIDER = "U0OUTSIDE1"
FALLBACK = "U0FALLBK01"

DB_BACKENDS = ["sqlite"] + (["postgresql"] if os.environ.get("TEST_DATABASE_URL") else [])


@dataclass
class World:
    acme: str
    staging: str
    orange: str
    bob_member: str


def reset_postgres(url: str) -> None:
    engine = make_engine(url)
    with engine.begin() as connection:
        connection.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
        connection.execute(text("CREATE SCHEMA public"))
    engine.dispose()


@pytest.fixture(params=DB_BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Any) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/cf-access-bot.db"
    url = os.environ["TEST_DATABASE_URL"]
    reset_postgres(url)
    return url


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
    return World(acme, staging, orange, bob_member)


BotFactory = Callable[..., BotUnderTest]


@pytest.fixture
def make_bot(fake_slack: FakeSlack, fake_cf: FakeCloudflare, world: World, database_url: str) -> Iterator[BotFactory]:
    started: list[BotUnderTest] = []

    def factory(*, clock: Any = None, run_scheduler: bool = False, **overrides: Any) -> BotUnderTest:
        settings = bot_settings(fake_slack, fake_cf, database_url, **overrides)
        bot = BotUnderTest(settings, clock=clock, run_scheduler=run_scheduler)
        bot.slack_url = fake_slack.url
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
