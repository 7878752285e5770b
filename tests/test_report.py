"""The access review (SPEC §13): `cf-access-bot report` in its three formats, the scheduled digest
(once across replicas), the approvers' Home counts, and the 2FA nudge after an acceptance.

One account, "Review Co", holds every case a review must show: members added through the bot
(one accepted with extra access given in the dashboard, one pending for 8 days, one since
deactivated in Slack), members added outside it (a Slack guest, someone not in Slack, someone
deactivated whom the bot never saw, a pending invite of unknown age, an e-mail that would be a
spreadsheet formula), and members with and without 2FA.

Slack is asked by walking `users.list` while its pages pay, else by one look-up per e-mail: the
tests below take each way, and a walk that fails half-way.
"""

from __future__ import annotations

import csv
import io
import json
import threading
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.error import URLError

import pytest

from bot.core.clock import FrozenClock
from bot.ops.report_cli import REPORT_COLUMNS, run_report
from bot.ops.scheduler import Sweeper
from storage.repository import iter_audit
from tests.conftest import ALICE, MALLORY, ROLE_IDS, BotFactory, World
from tests.fakes.cloudflare import FakeCloudflare
from tests.fakes.slack import FakeSlack
from tests.harness import BotUnderTest
from tests.helpers import audit_names, file_request, roots_of, stored, texts
from tests.process import bot_env

OWNER = "U0OWNER001"
OPS = "U0OPS00001"
GUEST = "U0GUEST001"
OLD = "U0OLDUSR01"
FRANK = "U0FRANK001"
REPORT_CHANNEL = "C0REPORT01"


@dataclass
class Review:
    account: str
    alice: int
    mallory: int
    frank: int


def seed_account(fake_cf: FakeCloudflare, fake_slack: FakeSlack) -> str:
    """Review Co with its members added outside the bot (the bot's own come from requests)."""
    account = fake_cf.add_account("Review Co")
    fake_slack.add_user(OWNER, "owner@example.com", "owner")
    fake_slack.add_user(OPS, "ops@example.com", "ops")
    fake_slack.add_user(GUEST, "guest@example.com", "guest", is_restricted=True)
    fake_slack.add_user(OLD, "olduser@example.com", "olduser", deleted=True)
    fake_slack.add_user(FRANK, "frank@example.com", "frank")
    with_two_factor = [
        fake_cf.add_member(account, "owner@example.com", [ROLE_IDS["super"]]),
        fake_cf.add_member(account, "ops@example.com", [ROLE_IDS["dns"]]),
        fake_cf.add_member(account, "guest@example.com", [ROLE_IDS["admin"]]),
        fake_cf.add_member(account, "olduser@example.com", [ROLE_IDS["dns"]]),
        fake_cf.add_member(account, "=cmd@example.com", [ROLE_IDS["dns"]]),
    ]
    for member_id in with_two_factor:
        fake_cf.set_two_factor(account, member_id)
    fake_cf.add_member(account, "ghost@example.com", [ROLE_IDS["dns"]])  # no 2FA, not in Slack
    fake_cf.add_member(account, "pending@example.com", [ROLE_IDS["dns"]], status="pending")
    return account


def member_of(bot: BotUnderTest, request_id: int) -> str:
    return stored(bot, request_id).cloudflare_member_id or ""


def approve(bot: BotUnderTest, fake_slack: FakeSlack, request_id: int) -> None:
    bot.click(roots_of(fake_slack, request_id)[0], "request_approve", user_id=OWNER)
    assert stored(bot, request_id).status == "invited"


def sweep(bot: BotUnderTest) -> None:
    assert Sweeper(bot.services).run_once().errors == []


def grant_through_the_bot(bot: BotUnderTest, fake_slack: FakeSlack, fake_cf: FakeCloudflare, account: str) -> Review:
    """#1 Alice (accepted, no 2FA, later given Administrator in the dashboard), #2 Mallory (pending),
    #3 Frank (accepted with 2FA, then deactivated in Slack); the clock ends 8 days after the invites."""
    alice = file_request(bot, fake_slack, ALICE, 'request "Review Co" DNS rotate records')
    mallory = file_request(bot, fake_slack, MALLORY, 'request "Review Co" DNS look at logs')
    frank = file_request(bot, fake_slack, FRANK, 'request "Review Co" Billing invoices')
    for request_id in (alice, mallory, frank):
        approve(bot, fake_slack, request_id)
    fake_cf.accept(account, member_of(bot, alice))
    fake_cf.accept(account, member_of(bot, frank))
    fake_cf.set_two_factor(account, member_of(bot, frank))
    bot.clock.advance(timedelta(minutes=6))
    sweep(bot)
    assert stored(bot, alice).status == "accepted" and stored(bot, frank).status == "accepted"
    fake_cf.set_member_roles(account, member_of(bot, alice), [ROLE_IDS["dns"], ROLE_IDS["admin"]])
    fake_slack.users[FRANK].deleted = True
    bot.clock.advance(timedelta(days=8) - timedelta(minutes=6))
    return Review(account, alice, mallory, frank)


@pytest.fixture
def review(fake_cf: FakeCloudflare, fake_slack: FakeSlack, world: World) -> str:
    return seed_account(fake_cf, fake_slack)


def report(bot: BotUnderTest, fmt: str, account: str | None = None) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = run_report(bot.services, account=account, fmt=fmt, out=out, err=err)
    return code, out.getvalue(), err.getvalue()


EXPECTED = {
    # Review Co speaks permission policies (the default where the API answers): access shows its scope.
    # email: (status, access, granted_by, slack_status, two_factor)
    "=cmd@example.com": ("accepted", ["DNS on account"], ["outside"], "not found", True),
    "alice@example.com": (
        "accepted",
        ["Administrator on account", "DNS on account"],
        ["#1", "outside"],
        "active",
        False,
    ),
    "frank@example.com": ("accepted", ["Billing on account"], ["#3"], "deactivated", True),
    "ghost@example.com": ("accepted", ["DNS on account"], ["outside"], "not found", False),
    "guest@example.com": ("accepted", ["Administrator on account"], ["outside"], "guest", True),
    "mallory@example.com": ("pending", ["DNS on account"], ["#2"], "active", None),
    # The walk of Slack's user list shows deactivated people, whom the bot never saw too.
    "olduser@example.com": ("accepted", ["DNS on account"], ["outside"], "deactivated", True),
    "ops@example.com": ("accepted", ["DNS on account"], ["outside"], "active", True),
    "owner@example.com": ("accepted", ["Super Administrator - All Privileges on account"], ["outside"], "active", True),
    "pending@example.com": ("pending", ["DNS on account"], ["outside"], "not found", None),
}


def test_report_rows_in_json_csv_and_table_with_findings(
    make_bot: BotFactory, fake_slack: FakeSlack, fake_cf: FakeCloudflare, review: str
) -> None:
    bot = make_bot(cloudflare_account_ids=review)
    grant_through_the_bot(bot, fake_slack, fake_cf, review)
    lists_before = len(fake_cf.calls_to("GET", r"/members$"))
    gets_before = len(fake_cf.calls_to("GET", r"/members/"))
    lookups_before = len(fake_slack.calls_to("users.lookupByEmail"))
    infos_before = len(fake_slack.calls_to("users.info"))
    pages_before = len(fake_slack.calls_to("users.list"))

    code, out, err = report(bot, "json")

    assert code == 0, err
    rows = [json.loads(line) for line in out.splitlines()]
    assert all(list(row) == REPORT_COLUMNS for row in rows)
    assert {row["account"] for row in rows} == {"Review Co"} and {row["account_id"] for row in rows} == {review}
    got = {
        row["email"]: (row["status"], row["access"], row["granted_by"], row["slack_status"], row["two_factor"])
        for row in rows
    }
    assert got == EXPECTED
    assert [row["email"] for row in rows] == sorted(EXPECTED), "sorted by e-mail"
    assert all(row["access_ends_at"] is None for row in rows), "no time-bound grant here"
    # What it cost: one walk of the member list, no per-member GET; the workspace's one page of
    # users answered every e-mail (ten wanted: a page pays from three), so no look-up at all.
    assert len(fake_cf.calls_to("GET", r"/members$")) - lists_before == 1
    assert len(fake_cf.calls_to("GET", r"/members/")) == gets_before
    assert [c["limit"] for c in fake_slack.calls_to("users.list")[pages_before:]] == ["200"]
    assert len(fake_slack.calls_to("users.lookupByEmail")) == lookups_before
    assert len(fake_slack.calls_to("users.info")) == infos_before

    code, out, _ = report(bot, "csv")
    table = list(csv.reader(io.StringIO(out)))
    assert code == 0 and table[0] == REPORT_COLUMNS
    by_email = {line[2]: dict(zip(REPORT_COLUMNS, line, strict=True)) for line in table[1:]}
    assert "'=cmd@example.com" in by_email, "a cell that a spreadsheet would run as a formula is neutralised"
    assert by_email["alice@example.com"]["granted_by"] == "#1, outside"
    assert by_email["alice@example.com"]["access"] == "Administrator on account, DNS on account"
    assert by_email["alice@example.com"]["two_factor"] == "false"
    assert by_email["mallory@example.com"]["two_factor"] == "", "no user to ask while the invite is pending"
    assert by_email["frank@example.com"]["slack_status"] == "deactivated"
    assert len(table) == 1 + len(EXPECTED)

    code, out, _ = report(bot, "table")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["ACCOUNT", "EMAIL", "STATUS"]
    alice_line = next(line for line in lines if "alice@example.com" in line)
    assert "#1, outside" in alice_line and "active" in alice_line and alice_line.rstrip().endswith("no")
    findings = out.split("FINDINGS", 1)[1]
    assert f"Review Co ({review}): 10 members, 1 Super Administrator (owner@example.com)" in findings
    expected_findings = {
        "added outside the bot: 7": [
            "=cmd@example.com",
            "ghost@example.com",
            "guest@example.com",
            "olduser@example.com",
            "ops@example.com",
            "owner@example.com",
            "pending@example.com",
        ],
        "deactivated in Slack: 2": ["frank@example.com", "olduser@example.com"],
        "pending for over 7d: 1": ["mallory@example.com (pending 8d, #2)"],
        "pending, invited outside the bot (age unknown): 1": ["pending@example.com"],
        "without 2FA: 2": ["alice@example.com", "ghost@example.com"],
        "not found in Slack: 3": ["=cmd@example.com", "ghost@example.com", "pending@example.com"],
    }
    for heading, entries in expected_findings.items():
        assert finding_entries(findings, heading) == entries, heading


def finding_entries(findings: str, heading: str) -> list[str]:
    """The names listed under `  heading` in the table's findings block."""
    lines = findings.splitlines()
    start = lines.index(f"  {heading}") + 1
    entries = []
    for line in lines[start:]:
        if not line.startswith("    "):
            break
        entries.append(line.strip())
    return entries


def test_report_of_one_account_and_a_name_that_matches_none(
    make_bot: BotFactory, fake_slack: FakeSlack, fake_cf: FakeCloudflare, world: World, review: str
) -> None:
    bot = make_bot()
    code, out, _ = report(bot, "json", account="review")
    assert code == 0 and {json.loads(line)["account"] for line in out.splitlines()} == {"Review Co"}
    from bot.core.config import ConfigError

    with pytest.raises(ConfigError, match="--account 'Nowhere' matches no requestable account"):
        report(bot, "json", account="Nowhere")
    with pytest.raises(ConfigError, match="matches several"):
        report(bot, "json", account="Acme")


def test_report_command_line(
    fake_slack: FakeSlack, fake_cf: FakeCloudflare, world: World, review: str, bot: BotUnderTest, database_url: str
) -> None:
    """The console script end to end: a JSON line per member, exit 2 naming a bad --account."""
    import subprocess
    import sys

    from tests.process import ROOT

    env = bot_env(fake_slack, fake_cf, database_url, CLOUDFLARE_ACCOUNT_IDS=review)

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "bot", "report", *args],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    result = run("--format", "json")
    assert result.returncode == 0, result.stderr
    emails = [json.loads(line)["email"] for line in result.stdout.splitlines()]
    assert "ghost@example.com" in emails and "owner@example.com" in emails
    wrong = run("--account", "Nowhere")
    assert wrong.returncode == 2 and "--account 'Nowhere' matches no requestable account" in wrong.stderr


def test_a_large_account_costs_one_member_page_per_50_and_shows_progress(
    make_bot: BotFactory, fake_slack: FakeSlack, fake_cf: FakeCloudflare, world: World
) -> None:
    """1000 members, half of them in Slack (a tenth of those deactivated) behind 300 people who
    are not members: the walk gets past two pages that find nothing, pays on every page after,
    short pages included, and answers all 1000 without a look-up."""
    big = fake_cf.add_account("Big Co")
    members = 1000
    others = {f"U0OTHER{n:03d}": f"other{n}@elsewhere.example" for n in range(300)}
    # An account deactivated long ago once held user00002's address; the live one comes later.
    others["U0OTHER000"] = "user00002@example.com"
    for user_id, email in others.items():
        fake_slack.add_user(user_id, email, user_id, deleted=user_id == "U0OTHER000")
    fake_slack.users = {**{u: fake_slack.users[u] for u in others}, **fake_slack.users}
    for n in range(members):
        fake_cf.add_member(big, f"user{n:05d}@example.com", [ROLE_IDS["dns"]])
        if n % 2 == 0:
            fake_slack.add_user(f"U0BIG{n:05d}", f"user{n:05d}@example.com", f"user{n}", deleted=n % 20 == 0)
    fake_slack.users_page_cap = 150  # fewer than the 200 asked, before the end: the walk goes on
    workspace = len(fake_slack.users)
    bot = make_bot(cloudflare_account_ids=big)
    calls_before = len(fake_cf.calls)
    code, out, err = report(bot, "json")
    assert code == 0
    statuses = {row["email"]: row["slack_status"] for row in map(json.loads, out.splitlines())}
    assert len(statuses) == members
    assert statuses["user00002@example.com"] == "active", "the live account, not the deactivated one before it"
    assert statuses["user00001@example.com"] == "not found"
    assert statuses["user00020@example.com"] == "deactivated"
    assert list(statuses.values()).count("deactivated") == members // 20
    member_pages = fake_cf.calls_to("GET", rf"/accounts/{big}/members$")
    assert len(member_pages) == members // 50
    # Besides the pages: at most the account and its roles (the directory may have them cached).
    assert len(fake_cf.calls) - calls_before <= members // 50 + 2
    pages = -(-workspace // 150)
    assert len(fake_slack.calls_to("users.list")) == pages
    assert fake_slack.calls_to("users.lookupByEmail") == [] and fake_slack.calls_to("users.info") == []
    assert (
        f"Big Co: 1000 members read; 1000 of 1000 e-mails answered without a look-up ({pages} pages of "
        "Slack's user list), 0 to look up" in err
    )


def test_a_few_members_in_a_large_workspace_are_looked_up_after_one_page(
    make_bot: BotFactory, fake_slack: FakeSlack, fake_cf: FakeCloudflare, review: str
) -> None:
    """Review Co's ten e-mails in a workspace of 1000 people: the first page finds none of them, so
    the walk stops there and each is looked up; a deactivated person is told from unknown only when
    the bot knows their Slack id (Frank asked once; the old user never did)."""
    others = {f"U0MANY{n:04d}": n for n in range(1000)}
    for user_id, n in others.items():
        fake_slack.add_user(user_id, f"someone{n}@elsewhere.example", f"someone{n}")
    # Slack lists in no particular order: here everyone else comes first.
    fake_slack.users = {**{u: fake_slack.users[u] for u in others}, **fake_slack.users}
    bot = make_bot(cloudflare_account_ids=review)
    grant_through_the_bot(bot, fake_slack, fake_cf, review)
    pages_before = len(fake_slack.calls_to("users.list"))
    lookups_before = len(fake_slack.calls_to("users.lookupByEmail"))
    infos_before = len(fake_slack.calls_to("users.info"))
    code, out, _ = report(bot, "json")
    assert code == 0
    statuses = {row["email"]: row["slack_status"] for row in map(json.loads, out.splitlines())}
    assert statuses == {email: expected[3] for email, expected in EXPECTED.items()} | {
        "olduser@example.com": "not found"
    }
    assert len(fake_slack.calls_to("users.list")) - pages_before == 1
    assert len(fake_slack.calls_to("users.lookupByEmail")) - lookups_before == len(EXPECTED)
    assert [c["user"] for c in fake_slack.calls_to("users.info")[infos_before:]] == [FRANK]


def test_a_walk_refused_half_way_leaves_the_rest_to_look_ups(
    make_bot: BotFactory, fake_slack: FakeSlack, fake_cf: FakeCloudflare, review: str
) -> None:
    """Slack refuses the second page (an expired cursor): the review still answers every e-mail,
    what the first page listed from it and the rest by look-ups; nothing is reported unknown."""
    from tests.fakes.slack import SlackFault

    first = [OWNER, OPS, GUEST, OLD]  # the first page (of four) finds four of the ten: the walk goes on
    fake_slack.users = {**{u: fake_slack.users[u] for u in first}, **fake_slack.users}
    fake_slack.users_page_cap = 4
    fake_slack.inject(SlackFault("users.list", status=200, error="invalid_cursor", skip=1))
    bot = make_bot(cloudflare_account_ids=review)
    code, out, err = report(bot, "json")
    assert code == 0, err
    statuses = {row["email"]: row["slack_status"] for row in map(json.loads, out.splitlines())}
    assert statuses["owner@example.com"] == "active" and statuses["guest@example.com"] == "guest"
    assert statuses["ghost@example.com"] == "not found" and "unknown" not in statuses.values()
    assert statuses["olduser@example.com"] == "deactivated", "listed on the first page"
    pages = fake_slack.calls_to("users.list")
    assert len(pages) == 2 and "cursor" not in pages[0] and pages[1]["cursor"]
    listed_first = [user.email for user in list(fake_slack.users.values())[:4] if user.email]
    looked_up = [c["email"] for c in fake_slack.calls_to("users.lookupByEmail")]
    assert looked_up and not set(looked_up) & set(listed_first)
    assert sorted(looked_up) == sorted(set(statuses) - set(listed_first))


# --- the digest -----------------------------------------------------------------------------------


def digests(fake_slack: FakeSlack) -> list[Any]:
    with fake_slack.lock:
        return [m for m in fake_slack.messages if m.channel == REPORT_CHANNEL]


def test_digest_is_posted_once_by_two_replicas_then_every_interval(
    make_bot: BotFactory, fake_slack: FakeSlack, fake_cf: FakeCloudflare, review: str
) -> None:
    fake_slack.add_channel(REPORT_CHANNEL)
    clock = FrozenClock()
    # Offboarding off: Frank, deactivated in Slack, keeps his access and the digest reports him.
    settings = {"cloudflare_account_ids": review, "report_channel": REPORT_CHANNEL, "offboard_deactivated": False}
    replicas = [make_bot(clock=clock, report_interval="7d", **settings) for _ in range(2)]
    grant_through_the_bot(replicas[0], fake_slack, fake_cf, review)
    # Its one sweep (6 minutes in) posted the first digest: a fresh deployment posts at its first sweep.
    assert len(digests(fake_slack)) == 1
    barrier = threading.Barrier(2)

    def sweep_both() -> None:
        def run(replica: BotUnderTest) -> None:
            barrier.wait()
            sweep(replica)

        threads = [threading.Thread(target=run, args=(replica,)) for replica in replicas]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    sweep_both()  # 8 days later: due again
    sweep_both()
    assert len(digests(fake_slack)) == 2, "one more after REPORT_INTERVAL, from one replica only"
    clock.advance(timedelta(days=6))
    sweep_both()
    assert len(digests(fake_slack)) == 2, "not again within REPORT_INTERVAL, whichever replica sweeps"
    clock.advance(timedelta(days=1))
    sweep_both()
    assert len(digests(fake_slack)) == 3
    digest = digests(fake_slack)[-1]
    assert digest.text.startswith("Cloudflare access review of 1 account: 7 added outside the bot")
    assert digest.blocks[0]["text"]["text"] == "Cloudflare access review"
    account = next(b["text"]["text"] for b in digest.blocks if "Review Co" in json.dumps(b))
    assert account.splitlines()[0] == "*Review Co* · 10 members · 1 Super Administrator"
    assert "• *7 added outside the bot*: =cmd@example.com, ghost@example.com, guest@example.com and 4 more" in account
    assert "• *2 deactivated in Slack*: frank@example.com, olduser@example.com" in account
    assert "• *1 pending for over 7d*: mallory@example.com (pending 15d, #2)" in account
    assert "• *2 without 2FA*: alice@example.com, ghost@example.com" in account
    assert "`cf-access-bot report`" in json.dumps(digest.blocks[-1])
    with replicas[0].db.session() as session:
        posted = [e for e in iter_audit(session) if e.event == "report_posted"]
    assert len(posted) == 3 and posted[-1].details["channel"] == REPORT_CHANNEL
    assert posted[-1].details["findings"]["outside"] == 7 and posted[-1].request_id is None


def test_a_refused_digest_is_posted_at_the_next_sweep(
    make_bot: BotFactory, fake_slack: FakeSlack, fake_cf: FakeCloudflare, review: str
) -> None:
    """Slack refused the post: the run is put back (not counted as a digest), so the next sweep posts."""
    from tests.fakes.slack import SlackFault

    fake_slack.add_channel(REPORT_CHANNEL)
    bot = make_bot(cloudflare_account_ids=review, report_channel=REPORT_CHANNEL)
    fake_slack.inject(SlackFault("chat.postMessage", status=200, error="channel_not_found"))
    sweep(bot)
    assert digests(fake_slack) == []
    sweep(bot)
    assert len(digests(fake_slack)) == 1
    assert digests(fake_slack)[0].text.startswith("Cloudflare access review of 1 account: 7 added outside the bot")


def test_a_digest_post_slack_never_answered_is_not_posted_twice(
    make_bot: BotFactory, fake_slack: FakeSlack, fake_cf: FakeCloudflare, review: str
) -> None:
    """The post's connection closed after Slack took it: it is in the channel, and is not posted again."""
    from tests.fakes.slack import SlackFault

    fake_slack.add_channel(REPORT_CHANNEL)
    bot = make_bot(cloudflare_account_ids=review, report_channel=REPORT_CHANNEL)
    fake_slack.inject(SlackFault("chat.postMessage", drop=True, after_effect=True))
    sweep(bot)
    sweep(bot)
    assert len(digests(fake_slack)) == 1


def test_a_digest_that_never_left_is_posted_at_the_next_sweep(
    make_bot: BotFactory, fake_slack: FakeSlack, fake_cf: FakeCloudflare, review: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No connection could be made for the post (urllib's URLError: nothing was sent): the next sweep posts it."""
    fake_slack.add_channel(REPORT_CHANNEL)
    bot = make_bot(cloudflare_account_ids=review, report_channel=REPORT_CHANNEL)
    post = bot.services.slack.post

    def unreachable(*_args: Any, **_kwargs: Any) -> Any:
        raise URLError(ConnectionRefusedError(111, "Connection refused"))

    monkeypatch.setattr(bot.services.slack, "post", unreachable)
    sweep(bot)
    monkeypatch.setattr(bot.services.slack, "post", post)
    assert digests(fake_slack) == []
    sweep(bot)
    assert len(digests(fake_slack)) == 1


def test_no_digest_without_report_channel(make_bot: BotFactory, fake_slack: FakeSlack, review: str) -> None:
    bot = make_bot(cloudflare_account_ids=review)
    asked = len(fake_slack.calls_to("users.lookupByEmail")) + len(fake_slack.calls_to("users.list"))
    sweep(bot)
    assert not any("access review" in m.text for m in fake_slack.messages)
    assert len(fake_slack.calls_to("users.lookupByEmail")) + len(fake_slack.calls_to("users.list")) == asked, (
        "no review ran"
    )


# --- App Home --------------------------------------------------------------------------------------


def test_approvers_see_the_findings_counts_on_home(
    make_bot: BotFactory, fake_slack: FakeSlack, fake_cf: FakeCloudflare, review: str
) -> None:
    from tests.test_home import open_home

    bot = make_bot(cloudflare_account_ids=review)
    grant_through_the_bot(bot, fake_slack, fake_cf, review)
    before = json.dumps(open_home(bot, fake_slack, OWNER))
    assert "Access review" not in before, "nothing reviewed yet"
    assert report(bot, "json")[0] == 0
    home = json.dumps(open_home(bot, fake_slack, OWNER), ensure_ascii=False)
    assert "Access review of the accounts you approve for" in home
    assert "*Review Co* · 10 members · 1 Super Administrator" in home
    assert "• *7 added outside the bot*" in home and "• *2 without 2FA*" in home
    assert "• *2 deactivated in Slack*" in home and "• *1 pending for over 7d*" in home
    assert "ghost@example.com" not in home, "counts only on Home; names are in the report"
    assert "Access review" not in json.dumps(open_home(bot, fake_slack, ALICE)), "not an approver"


# --- the 2FA nudge ---------------------------------------------------------------------------------


def test_two_factor_nudge_only_when_2fa_is_off(
    make_bot: BotFactory, fake_slack: FakeSlack, fake_cf: FakeCloudflare, review: str
) -> None:
    fake_cf.enforce_two_factor(review)
    bot = make_bot(cloudflare_account_ids=review)
    alice = file_request(bot, fake_slack, ALICE, 'request "Review Co" DNS rotate records')
    frank = file_request(bot, fake_slack, FRANK, 'request "Review Co" Billing invoices')
    for request_id in (alice, frank):
        approve(bot, fake_slack, request_id)
    fake_cf.accept(review, member_of(bot, alice))
    fake_cf.accept(review, member_of(bot, frank))
    fake_cf.set_two_factor(review, member_of(bot, frank))
    gets_before = len(fake_cf.calls_to("GET", r"/members/"))
    bot.clock.advance(timedelta(minutes=6))
    sweep(bot)

    nudges = [m.text for m in fake_slack.dms_to(ALICE) if "two-factor" in m.text]
    assert len(nudges) == 1
    assert "Your Cloudflare login (alice@example.com) has no two-factor authentication yet" in nudges[0]
    assert "*Review Co requires it*" in nudges[0] and "My Profile → Authentication" in nudges[0]
    thread = texts(fake_slack.thread(roots_of(fake_slack, alice)[0]))
    assert f"<@{ALICE}> has no two-factor authentication on Cloudflare yet (this account requires it)" in thread
    assert audit_names(bot, alice)[-2:] == ["invite_accepted", "two_factor_nudged"]
    assert not [m for m in fake_slack.dms_to(FRANK) if "two-factor" in m.text], "Frank has 2FA: no nudge"
    assert "two_factor_nudged" not in audit_names(bot, frank)
    assert "two-factor" not in texts(fake_slack.thread(roots_of(fake_slack, frank)[0]))
    # One GET of each new member (the listing already had it, but the nudge reads it fresh).
    assert len(fake_cf.calls_to("GET", r"/members/")) - gets_before == 2

    sweep(bot)
    assert len([m for m in fake_slack.dms_to(ALICE) if "two-factor" in m.text]) == 1, "once"


def test_two_factor_nudge_without_enforcement_does_not_say_required(
    make_bot: BotFactory, fake_slack: FakeSlack, fake_cf: FakeCloudflare, review: str
) -> None:
    bot = make_bot(cloudflare_account_ids=review)
    alice = file_request(bot, fake_slack, ALICE, 'request "Review Co" DNS rotate records')
    approve(bot, fake_slack, alice)
    fake_cf.accept(review, member_of(bot, alice))
    bot.clock.advance(timedelta(minutes=6))
    sweep(bot)
    nudge = next(m.text for m in fake_slack.dms_to(ALICE) if "two-factor" in m.text)
    assert "requires it" not in nudge and "My Profile → Authentication" in nudge
    nudged = [e for e in audit_names(bot, alice) if e == "two_factor_nudged"]
    assert nudged == ["two_factor_nudged"]


@pytest.mark.parametrize(
    ("failure", "thread_says", "delivered"),
    [
        ("no answer after Slack took it", "Slack did not confirm the DM telling them how to turn it on", None),
        ("never sent", "the DM telling them how to turn it on failed", False),
    ],
)
def test_a_two_factor_nudge_slack_did_not_confirm_is_not_called_failed(
    make_bot: BotFactory,
    fake_slack: FakeSlack,
    fake_cf: FakeCloudflare,
    review: str,
    monkeypatch: pytest.MonkeyPatch,
    failure: str,
    thread_says: str,
    delivered: bool | None,
) -> None:
    """The nudge's DM loses its answer after Slack posted it: the thread says Slack did not confirm
    it (it may well be in Alice's DMs), not that it failed; a DM that never left is a failure."""
    from http.client import RemoteDisconnected

    bot = make_bot(cloudflare_account_ids=review)
    alice = file_request(bot, fake_slack, ALICE, 'request "Review Co" DNS rotate records')
    approve(bot, fake_slack, alice)
    fake_cf.accept(review, member_of(bot, alice))
    dm = bot.services.slack.dm

    def nudge_lost(user_id: str, text: str, blocks: Any) -> Any:
        if "two-factor" not in text:
            return dm(user_id, text, blocks)
        if failure == "never sent":
            raise URLError(ConnectionRefusedError(111, "Connection refused"))
        dm(user_id, text, blocks)
        raise RemoteDisconnected("Remote end closed connection without response")

    monkeypatch.setattr(bot.services.slack, "dm", nudge_lost)
    bot.clock.advance(timedelta(minutes=6))
    sweep(bot)
    thread = texts(fake_slack.thread(roots_of(fake_slack, alice)[0]))
    assert f"<@{ALICE}> has no two-factor authentication on Cloudflare yet; {thread_says}." in thread, thread
    with bot.db.session() as session:
        (nudged,) = [e for e in iter_audit(session) if e.event == "two_factor_nudged"]
    assert nudged.details["delivered"] is delivered


def test_models_tolerate_null_two_factor_and_settings() -> None:
    from bot.cloudflare.models import Account, Member

    member = Member.model_validate({"id": "m", "user": {"email": "a@b.c", "two_factor_authentication_enabled": None}})
    assert member.user.two_factor_authentication_enabled is False
    assert Account.model_validate({"id": "a", "settings": None}).settings.enforce_twofactor is False
    assert Account.model_validate({"id": "a"}).settings.enforce_twofactor is False
    assert Account.model_validate({"id": "a", "settings": {"enforce_twofactor": True}}).settings.enforce_twofactor


def test_digest_stays_within_block_kit_limits_for_many_large_accounts() -> None:
    from bot.slack.report_views import AccountSummary, FindingSummary, digest_blocks
    from tests.fakes.block_kit import message_errors

    long_name = "x" * 400 + "@example.com"
    accounts = [
        AccountSummary(
            name=f"<!channel> {'Account ' * 40}{n}",
            members=5000,
            super_admins=3,
            enforces_two_factor=True,
            findings=[FindingSummary(f"finding {k}", 4000, [long_name] * 3) for k in range(6)],
        )
        for n in range(60)
    ]
    blocks = [block.to_dict() for block in digest_blocks(accounts, as_of=FrozenClock().now(), unreadable=["Odd"])]
    assert len(blocks) == 50 and message_errors(blocks) == []
    shown = json.dumps(blocks, ensure_ascii=False)
    assert "…and 15 more accounts." in shown and "<!channel>" not in shown
    assert "and 3997 more" in shown and "`cf-access-bot report`" in json.dumps(blocks[-1])


def test_a_lapsed_claim_is_taken_over_and_its_old_holder_changes_nothing(database_url: str) -> None:
    from storage.db import Database
    from storage.migrate import upgrade
    from storage.scheduled_runs import claim_run, finish_run

    db = Database.from_url(database_url)
    upgrade(db.engine)
    now = FrozenClock().now()
    week, lease = timedelta(days=7), timedelta(minutes=30)
    with db.session() as session:
        first = claim_run(session, "job", now=now, every=week, lease=lease)
    with db.session() as session:
        assert (
            first is not None
            and claim_run(session, "job", now=now + timedelta(minutes=1), every=week, lease=lease) is None
        )
    later = now + timedelta(minutes=31)  # the first holder crashed: its claim lapsed
    with db.session() as session:
        second = claim_run(session, "job", now=later, every=week, lease=lease)
    assert second is not None and second.previous_run_at is None
    with db.session() as session:
        assert not finish_run(session, first, ran_at=later), "the old holder records nothing"
        assert finish_run(session, second, ran_at=later)
    with db.session() as session:
        assert claim_run(session, "job", now=later + week - timedelta(seconds=1), every=week, lease=lease) is None
        claim = claim_run(session, "job", now=later + week, every=week, lease=lease)
    assert claim is not None and claim.previous_run_at == later


def test_a_look_up_slack_never_answers_leaves_the_rest_unknown_and_the_review_goes_on(
    make_bot: BotFactory, fake_slack: FakeSlack, fake_cf: FakeCloudflare, review: str
) -> None:
    """The walk is refused, and Slack closes the connection on the first look-up and on its retries:
    the review still lists every row, and reads `unknown` (Slack could not be asked) for everyone
    left, without asking again: each call would wait out its retries (a sweep waits for the digest)."""
    from tests.fakes.slack import SlackFault

    bot = make_bot(cloudflare_account_ids=review)

    def statuses() -> dict[str, str]:
        fake_slack.inject(SlackFault("users.list", status=200, error="invalid_cursor"))
        code, out, err = report(bot, "json")
        assert code == 0, err
        return {row["email"]: row["slack_status"] for row in map(json.loads, out.splitlines())}

    answered = statuses()
    assert "unknown" not in answered.values()
    looked_up = len(fake_slack.calls_to("users.lookupByEmail"))
    fake_slack.inject(SlackFault("users.lookupByEmail", drop=True, times=3))
    got = statuses()
    assert got.keys() == answered.keys() and set(got.values()) == {"unknown"}
    assert len(fake_slack.calls_to("users.lookupByEmail")) - looked_up == 3, "one look-up, tried three times"


def test_a_slack_rate_limit_during_the_review_is_waited_out(
    make_bot: BotFactory, fake_slack: FakeSlack, fake_cf: FakeCloudflare, review: str
) -> None:
    from tests.fakes.slack import SlackFault

    bot = make_bot(cloudflare_account_ids=review)
    fake_slack.inject(SlackFault("users.list", retry_after=1))
    code, out, _ = report(bot, "json")
    statuses = {record["email"]: record["slack_status"] for record in map(json.loads, out.splitlines())}
    assert code == 0 and statuses["owner@example.com"] == "active" and statuses["guest@example.com"] == "guest"
    assert "unknown" not in statuses.values(), "the 429 was retried after Retry-After, not reported as unknown"
    assert len(fake_slack.calls_to("users.list")) == 2, "the page was asked again, not given up for look-ups"
    assert fake_slack.calls_to("users.lookupByEmail") == []
