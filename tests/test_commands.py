"""`/cf-access` subcommands (SPEC §4) and every bad input of the core issue's item 10."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from slack_sdk.http_retry import FixedValueRetryIntervalCalculator
from sqlalchemy import func, select

import bot.access.filing as filing_module
from storage.models import AccessRequest
from storage.repository import iter_audit
from tests.conftest import ALICE, BOB, CAROL, FALLBACK, MALLORY, NOEMAIL, OUTSIDER, PG_IDS, ROLE_IDS, BotFactory, World
from tests.fakes.cloudflare import FakeCloudflare
from tests.fakes.slack import FakeSlack, SlackFault
from tests.harness import BotUnderTest
from tests.helpers import answer, file_request, roots_of, stored


def request_count(bot: BotUnderTest) -> int:
    with bot.db.session() as session:
        return int(session.scalar(select(func.count()).select_from(AccessRequest)) or 0)


def test_help_and_unknown_subcommands(bot: BotUnderTest, fake_slack: FakeSlack) -> None:
    said = answer(bot, fake_slack, "help", ALICE)
    for subcommand in ("request ACCOUNT ROLE", "accounts", "roles ACCOUNT", "status", "pending", "cancel ID"):
        assert subcommand in said
    said = answer(bot, fake_slack, "frobnicate", ALICE)
    assert "`frobnicate` is not a /cf-access command" in said and "status" in said


def test_accounts_and_roles(bot: BotUnderTest, fake_slack: FakeSlack, world: World) -> None:
    said = answer(bot, fake_slack, "accounts", ALICE)
    assert "Acme Production" in said and "Acme Staging" in said and world.acme in said
    said = answer(bot, fake_slack, 'roles "acme production"', ALICE)
    assert "Administrator Read Only" in said and "Can edit DNS records." in said
    assert "Super Administrator" not in said, "Super Administrator is not requestable unless listed"
    said = answer(bot, fake_slack, "roles", ALICE)
    assert "Usage: `/cf-access roles ACCOUNT`" in said


def test_account_allowlist(make_bot: BotFactory, fake_slack: FakeSlack, world: World) -> None:
    bot = make_bot(cloudflare_account_ids=f"{world.staging}")
    said = answer(bot, fake_slack, "accounts", ALICE)
    assert "Acme Staging" in said and "Acme Production" not in said
    said = answer(bot, fake_slack, 'request "Acme Production" DNS need it', ALICE)
    assert "No requestable account matches `Acme Production`" in said


def test_quick_request_with_quotes_and_prefixes(bot: BotUnderTest, fake_slack: FakeSlack, world: World) -> None:
    said = answer(bot, fake_slack, 'request "acme prod" administrator,billing I can\'t deploy', ALICE)
    assert "Request #1 filed" in said
    request = stored(bot, 1)
    assert request.account_id == world.acme
    assert request.requested_role_ids == [PG_IDS["admin"], PG_IDS["billing"]]
    assert request.reason == "I can't deploy"
    assert request.requester_email == "alice@example.com"
    assert request.status == "pending"


def test_request_by_ids(bot: BotUnderTest, fake_slack: FakeSlack, world: World) -> None:
    said = answer(bot, fake_slack, f"request {world.staging} {PG_IDS['dns']} testing", ALICE)
    assert "Request #1 filed" in said and "Acme Staging" in said


def test_a_legacy_role_id_is_taken_as_its_permission_group(
    bot: BotUnderTest, fake_slack: FakeSlack, world: World
) -> None:
    """Cloudflare asks integrations to remap stored role ids: a role id typed where the account speaks
    policies means the same-named permission group."""
    said = answer(bot, fake_slack, f"request {world.staging} {ROLE_IDS['dns']} testing", ALICE)
    assert "Request #1 filed" in said and stored(bot, 1).requested_role_ids == [PG_IDS["dns"]]


def test_role_names_and_prefixes_in_the_legacy_roles_model(
    make_bot: BotFactory, fake_slack: FakeSlack, world: World
) -> None:
    bot = make_bot(cloudflare_access_model="roles")
    said = answer(bot, fake_slack, 'request "Acme Production" Admin why', ALICE)
    assert "`Admin` matches several roles of Acme Production: `Administrator`, `Administrator Read Only`" in said
    said = answer(bot, fake_slack, 'request "Acme Production" Janitor why', ALICE)
    assert "No requestable role of Acme Production matches `Janitor`" in said
    said = answer(bot, fake_slack, f"request {world.staging} {ROLE_IDS['dns']} testing", ALICE)
    assert "Request #1 filed" in said and stored(bot, 1).requested_role_ids == [ROLE_IDS["dns"]]


def test_status_and_cancel(bot: BotUnderTest, fake_slack: FakeSlack, world: World) -> None:
    assert "You have no access requests" in answer(bot, fake_slack, "status", ALICE)
    request_id = file_request(bot, fake_slack, ALICE)
    said = answer(bot, fake_slack, "status", ALICE)
    assert f"#{request_id}" in said and "Acme Production" in said and "Pending" in said
    assert "You have no request #1" in answer(bot, fake_slack, "cancel 1", MALLORY)
    assert "Usage: `/cf-access cancel ID`" in answer(bot, fake_slack, "cancel abc", ALICE)
    said = answer(bot, fake_slack, f"cancel #{request_id}", ALICE)
    assert "is cancelled" in said
    assert stored(bot, request_id).status == "cancelled"
    for root in roots_of(fake_slack, request_id):
        assert "Cancelled" in root.all_text() and "request_approve" not in root.action_ids()
        assert any("withdrew" in reply.text for reply in fake_slack.thread(root))
    assert "only pending requests can be cancelled" in answer(bot, fake_slack, f"cancel {request_id}", ALICE)


def test_pending_lists_what_waits_on_the_approver(bot: BotUnderTest, fake_slack: FakeSlack, world: World) -> None:
    file_request(bot, fake_slack, ALICE)
    file_request(bot, fake_slack, ALICE, 'request "Acme Staging" DNS staging work')
    bob_sees = answer(bot, fake_slack, "pending", BOB)
    assert "#1" in bob_sees and "#2" not in bob_sees, "Bob approves Acme Production only"
    carol_sees = answer(bot, fake_slack, "pending", CAROL)
    assert "#1" in carol_sees and "#2" in carol_sees
    assert "Nothing is waiting for your decision" in answer(bot, fake_slack, "pending", MALLORY)


@pytest.mark.parametrize(
    "text,expected",
    [
        ("request Acme DNS why", "`Acme` matches several accounts: `Acme Production`, `Acme Staging`"),
        ("request Nowhere DNS why", "No requestable account matches `Nowhere`. Accounts: `Acme Production`"),
        (
            'request "Acme Production" Adm why',
            "`Adm` matches several permission groups of Acme Production: `Administrator`, `Administrator Read Only`",
        ),
        (
            'request "Acme Production" Janitor why',
            "No requestable permission group of Acme Production matches `Janitor`",
        ),
        ('request "Acme Production" "Super Administrator - All Privileges" why', "cannot be requested through Slack"),
        ('request "Acme Production" DNS', "The reason is missing"),
        (
            'request "Acme Production"',
            "Usage: `/cf-access request ACCOUNT ROLE[,ROLE...] [on ZONE[,ZONE...]] [for DURATION] REASON`",
        ),
        ('request "Acme Production DNS oops', "A quote is not closed"),
        ('request "Acme Production" DNS ' + "x" * 501, "The reason is 501 characters; keep it to 500"),
    ],
)
def test_bad_quick_requests_store_nothing(
    bot: BotUnderTest, fake_slack: FakeSlack, world: World, text: str, expected: str
) -> None:
    said = answer(bot, fake_slack, text, ALICE)
    assert expected in said
    assert request_count(bot) == 0 and fake_slack.roots() == []


def test_role_outside_requestable_roles(make_bot: BotFactory, fake_slack: FakeSlack, world: World) -> None:
    bot = make_bot(requestable_roles="DNS,domain_dns")  # by name or label
    said = answer(bot, fake_slack, 'request "Acme Production" Billing why', ALICE)
    assert "Billing cannot be requested through Slack" in said and "`DNS`, `Domain DNS`" in said
    assert request_count(bot) == 0


def test_email_outside_allowed_domains(make_bot: BotFactory, fake_slack: FakeSlack, world: World) -> None:
    bot = make_bot(allowed_email_domains="example.com")
    said = answer(bot, fake_slack, 'request "Acme Production" DNS why', OUTSIDER)
    assert "Invites may only go to addresses at example.com; your Slack e-mail is alice@gmail.com" in said
    assert request_count(bot) == 0
    fake_slack.add_user("U0SUBDOM01", "sam@eu.example.com", "sam")
    said = answer(bot, fake_slack, 'request "Acme Production" DNS why', "U0SUBDOM01")
    assert "Invites may only go to addresses at example.com" in said, "a subdomain counts only when listed"


def test_requester_without_email(bot: BotUnderTest, fake_slack: FakeSlack, world: World) -> None:
    said = answer(bot, fake_slack, 'request "Acme Production" DNS why', NOEMAIL)
    assert "Your Slack profile has no e-mail address" in said
    assert request_count(bot) == 0


def test_second_open_request_points_to_the_first(bot: BotUnderTest, fake_slack: FakeSlack, world: World) -> None:
    request_id = file_request(bot, fake_slack, ALICE)
    said = answer(bot, fake_slack, 'request "Acme Production" Billing another reason', ALICE)
    assert f"You already have an open request for Acme Production: #{request_id}" in said
    assert f"/cf-access cancel {request_id}" in said
    assert request_count(bot) == 1


def test_an_open_request_filed_between_the_check_and_the_insert_is_pointed_to(
    bot: BotUnderTest, fake_slack: FakeSlack, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two commands at once pass the early check; the database's unique index refuses the second,
    which is told the first's number (read after its own unit of work was rolled back)."""
    request_id = file_request(bot, fake_slack, ALICE)
    real = filing_module.open_request_for
    checks: list[tuple[Any, ...]] = []

    def first_check_sees_nothing(*args: Any) -> AccessRequest | None:
        checks.append(args)
        return None if len(checks) == 1 else real(*args)

    monkeypatch.setattr(filing_module, "open_request_for", first_check_sees_nothing)
    roots_before = len(fake_slack.roots())
    said = answer(bot, fake_slack, 'request "Acme Production" Billing another reason', ALICE)
    assert f"You already have an open request for Acme Production: #{request_id}" in said
    assert request_count(bot) == 1
    assert len(fake_slack.roots()) == roots_before, "nothing was posted to the approvers"
    with bot.db.session() as session:
        events = [event.event for event in iter_audit(session)]
    assert events.count("requested") == 1
    assert len(checks) == 2, "the open request is read again after the insert was refused"


def test_already_a_member_with_every_role(bot: BotUnderTest, fake_slack: FakeSlack, world: World) -> None:
    said = answer(bot, fake_slack, 'request "Acme Production" Administrator need admin', CAROL)
    assert "You are already a member of Acme Production with" in said and "Administrator" in said
    assert "Nothing was filed" in said
    assert request_count(bot) == 0


def test_account_with_no_approver(bot: BotUnderTest, fake_slack: FakeSlack, world: World) -> None:
    said = answer(bot, fake_slack, 'request "Orange Cloud" DNS why', ALICE)
    assert "Orange Cloud has no Super Administrator that can be reached in Slack" in said
    assert request_count(bot) == 0 and fake_slack.roots() == []


def test_fallback_approvers(make_bot: BotFactory, fake_slack: FakeSlack, world: World) -> None:
    bot = make_bot(fallback_approvers=FALLBACK)
    said = answer(bot, fake_slack, 'request "Orange Cloud" DNS why', ALICE)
    assert "Request #1 filed" in said and f"<@{FALLBACK}>" in said
    assert [root.channel for root in fake_slack.roots()] == [fake_slack.dm_channel(FALLBACK)]
    # Accounts that do have Super Admins in Slack ignore the fallback.
    file_request(bot, fake_slack, ALICE)
    assert fake_slack.dm_channel(BOB) in {root.channel for root in roots_of(fake_slack, 2)}


@pytest.mark.parametrize("failure", ["refused", "no answer"])
def test_approver_look_ups_that_all_fail_never_hand_the_account_to_the_fallback(
    make_bot: BotFactory, fake_slack: FakeSlack, world: World, failure: str
) -> None:
    """Slack refuses (or never answers) every approver look-up: that is not "no Super Admin
    reachable in Slack", so the request does not go to FALLBACK_APPROVERS, and once Slack answers
    again it goes to the account's Super Admins (nothing wrong was cached)."""
    bot = make_bot(fallback_approvers=FALLBACK)
    for handler in bot.services.slack.client.retry_handlers:  # retried at once: no real backoff sleeps
        handler.interval_calculator = FixedValueRetryIntervalCalculator(0)
    refused = SlackFault("users.lookupByEmail", times=100, status=200, error="internal_error")
    fake_slack.inject(refused if failure == "refused" else SlackFault("users.lookupByEmail", times=100, drop=True))
    said = answer(bot, fake_slack, 'request "Acme Production" DNS why', ALICE)
    assert "Slack could not say who approves for Acme Production" in said, said
    assert "Nothing was filed; try again in a minute" in said and fake_slack.roots() == [], said
    fake_slack.faults.clear()
    bot.clock.advance(timedelta(seconds=31))  # a failed look-up is not tried again for half a minute
    request_id = file_request(bot, fake_slack, ALICE)
    channels = {root.channel for root in roots_of(fake_slack, request_id)}
    assert channels == {fake_slack.dm_channel(BOB), fake_slack.dm_channel(CAROL)}


def test_an_approver_slack_cannot_look_up_is_not_refused_for_good(
    bot: BotUnderTest, fake_slack: FakeSlack, world: World
) -> None:
    """Bob's look-up fails while Carol's works, so the request reaches Carol alone. Bob clicks while
    his look-up fails again: he is told Slack could not confirm his rights, not that he may not
    decide, and once Slack answers his click goes through."""
    bob_refused = SlackFault("users.lookupByEmail", status=200, error="internal_error")  # bob@ sorts first
    fake_slack.inject(bob_refused)
    request_id = file_request(bot, fake_slack, ALICE)
    roots = roots_of(fake_slack, request_id)
    assert [root.channel for root in roots] == [fake_slack.dm_channel(CAROL)]
    look_ups = len(fake_slack.calls_to("users.lookupByEmail"))
    bot.click(roots[0], "request_approve", user_id=BOB)  # his look-up failed moments ago: not asked again yet
    told = fake_slack.responses_for(bot.last_response_id)
    assert told and "Could not check your approver rights with Slack" in told[-1]["text"], told
    assert "Try again in a minute" in told[-1]["text"]
    assert stored(bot, request_id).status == "pending"
    assert len(fake_slack.calls_to("users.lookupByEmail")) == look_ups
    bot.clock.advance(timedelta(seconds=31))
    # A list missing someone is kept only half a minute: the next request reaches Bob again.
    later = file_request(bot, fake_slack, MALLORY)
    assert {root.channel for root in roots_of(fake_slack, later)} == {
        fake_slack.dm_channel(BOB),
        fake_slack.dm_channel(CAROL),
    }
    bot.click(roots[0], "request_approve", user_id=BOB)
    assert stored(bot, request_id).status == "invited"


def test_an_approver_known_already_decides_while_slack_does_not_answer_for_another(
    bot: BotUnderTest, fake_slack: FakeSlack, world: World
) -> None:
    """Bob's look-up failed when the request was filed, so the list missing him lapses after half a
    minute; then Slack stops answering for Bob. Carol, whose id the bot still holds, approves: her
    rights need no Slack call, and nobody waits on Bob's."""
    for handler in bot.services.slack.client.retry_handlers:  # retried at once: no real backoff sleeps
        handler.interval_calculator = FixedValueRetryIntervalCalculator(0)
    fake_slack.inject(SlackFault("users.lookupByEmail", status=200, error="internal_error"))  # bob@ sorts first
    request_id = file_request(bot, fake_slack, ALICE)
    (root,) = roots_of(fake_slack, request_id)
    bot.clock.advance(timedelta(seconds=31))
    fake_slack.inject(SlackFault("users.lookupByEmail", drop=True, times=1000))
    bot.click(root, "request_approve", user_id=CAROL)
    assert stored(bot, request_id).status == "invited", fake_slack.responses_for(bot.last_response_id)


def test_a_slack_outage_costs_one_round_of_approver_look_ups_not_one_per_click(
    bot: BotUnderTest, fake_slack: FakeSlack, fake_cf: FakeCloudflare, world: World
) -> None:
    """The approver list has lapsed and Slack answers no look-up. Bob's click asks Slack once
    (with slack_sdk's retries) and not for Carol after that; Carol's click moments later asks
    nothing. Both are told to try again; half a minute on, with Slack back, Bob approves."""
    for handler in bot.services.slack.client.retry_handlers:  # retried at once: no real backoff sleeps
        handler.interval_calculator = FixedValueRetryIntervalCalculator(0)
    request_id = file_request(bot, fake_slack, ALICE)
    roots = roots_of(fake_slack, request_id)
    bot.clock.advance(timedelta(minutes=2))  # DIRECTORY_CACHE_TTL (1 min) has lapsed
    fake_slack.inject(SlackFault("users.lookupByEmail", drop=True, times=1000))
    look_ups = len(fake_slack.calls_to("users.lookupByEmail"))
    bot.click(roots[0], "request_approve", user_id=BOB)
    asked_for = [call["email"] for call in fake_slack.calls_to("users.lookupByEmail")[look_ups:]]
    assert asked_for == ["bob@example.com"] * 3, asked_for  # one try and slack_sdk's two retries
    told = fake_slack.responses_for(bot.last_response_id)
    assert told and "Could not check your approver rights with Slack" in told[-1]["text"], told
    listings = len(fake_cf.calls_to("GET", r"/members$"))
    bot.click(roots[1], "request_approve", user_id=CAROL)
    told = fake_slack.responses_for(bot.last_response_id)
    assert told and "Could not check your approver rights with Slack" in told[-1]["text"], told
    assert len(fake_slack.calls_to("users.lookupByEmail")) == look_ups + 3
    assert len(fake_cf.calls_to("GET", r"/members$")) == listings
    assert stored(bot, request_id).status == "pending"
    fake_slack.faults.clear()
    bot.clock.advance(timedelta(seconds=31))
    bot.click(roots[0], "request_approve", user_id=BOB)
    assert stored(bot, request_id).status == "invited"


def test_someone_with_nothing_to_approve_sees_their_queue_while_an_account_cannot_be_checked(
    bot: BotUnderTest, fake_slack: FakeSlack, world: World
) -> None:
    """Acme's approvers cannot be looked up in Slack right now: Mallory, who approves nothing, is
    still answered (one account's outage does not break everyone's queue)."""
    file_request(bot, fake_slack, ALICE)
    bot.clock.advance(timedelta(minutes=5))  # the approver lists have lapsed
    fake_slack.inject(SlackFault("users.lookupByEmail", status=200, error="internal_error", times=100))
    assert "Nothing is waiting for your decision" in answer(bot, fake_slack, "pending", MALLORY)


def test_cloudflare_failure_is_told_to_the_user(
    bot: BotUnderTest, fake_slack: FakeSlack, fake_cf: FakeCloudflare, world: World
) -> None:
    from tests.fakes.cloudflare import Fault

    fake_cf.inject(
        Fault(
            "GET",
            r"/members$",  # accounts and roles were loaded at start-up; the member check is live
            status=403,
            body={
                "success": False,
                "errors": [{"code": 10000, "message": "Authentication error"}],
                "messages": [],
                "result": None,
            },
        )
    )
    said = answer(bot, fake_slack, 'request "Acme Production" DNS why', ALICE)
    assert "Cloudflare did not answer as expected: Authentication error" in said
    assert request_count(bot) == 0
