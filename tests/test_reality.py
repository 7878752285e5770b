"""The fakes are as strict and as untidy as the real services, and the bot copes with what they do.

Each test names a rule of the real Slack or Cloudflare API: first that the fake enforces it (a
green test against a lenient fake proves nothing), then what a user sees when the bot meets it.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterator
from typing import Any
from urllib.error import URLError

import httpx
import pytest
from pydantic import SecretStr
from slack_sdk.http_retry import FixedValueRetryIntervalCalculator

from bot.cloudflare.client import CloudflareClient, CloudflareCredentials
from bot.cloudflare.errors import CloudflareServerError
from tests.conftest import ALICE, BOB, CAROL, BotFactory, World
from tests.fakes.cloudflare import DNS, PG_DNS, SUPER_ADMIN, FakeCloudflare, Fault
from tests.fakes.slack import BOT_USER_ID, FakeSlack, SlackFault
from tests.harness import BOT_TOKEN, BotUnderTest
from tests.helpers import answer, file_request, roots_of, stored, texts


def slack_call(fake_slack: FakeSlack, method: str, **args: Any) -> dict[str, Any]:
    """Call the fake Web API as any client would (JSON body, bearer token)."""
    response = httpx.post(
        f"{fake_slack.url}/api/{method}", json=args, headers={"Authorization": f"Bearer {BOT_TOKEN}"}, timeout=5
    )
    body: dict[str, Any] = response.json()
    return body


@pytest.fixture
def strict_slack() -> Iterator[FakeSlack]:
    slack = FakeSlack().start()
    yield slack
    slack.stop()


INPUT = {"type": "input", "block_id": "b", "label": {"type": "plain_text", "text": "Why"}}
INPUT["element"] = {"type": "plain_text_input", "action_id": "a"}
TITLE = {"type": "plain_text", "text": "Title"}


# --- Slack ------------------------------------------------------------------------------------------


def test_fake_slack_refuses_a_modal_with_inputs_and_no_submit(strict_slack: FakeSlack) -> None:
    trigger = strict_slack.issue_trigger()
    view = {"type": "modal", "title": TITLE, "blocks": [INPUT]}
    refused = slack_call(strict_slack, "views.open", trigger_id=trigger, view=view)
    assert refused["ok"] is False and refused["error"] == "invalid_arguments"
    assert "submit" in refused["response_metadata"]["messages"][0]
    # The same view with a submit button is taken.
    view = {"type": "modal", "title": TITLE, "submit": {"type": "plain_text", "text": "Send"}, "blocks": [INPUT]}
    assert slack_call(strict_slack, "views.open", trigger_id=strict_slack.issue_trigger(), view=view)["ok"] is True


def test_fake_slack_triggers_are_good_once_and_for_three_seconds(strict_slack: FakeSlack) -> None:
    view = {"type": "modal", "title": TITLE, "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "x"}}]}
    trigger = strict_slack.issue_trigger()
    assert slack_call(strict_slack, "views.open", trigger_id=trigger, view=view)["ok"] is True
    assert slack_call(strict_slack, "views.open", trigger_id=trigger, view=view)["error"] == "expired_trigger_id"
    stale = strict_slack.issue_trigger()
    strict_slack.age_triggers(3.1)
    assert slack_call(strict_slack, "views.open", trigger_id=stale, view=view)["error"] == "expired_trigger_id"
    assert slack_call(strict_slack, "views.open", trigger_id="1.2.made-up", view=view)["error"] == "invalid_arguments"


def test_fake_slack_enforces_block_kit_limits_and_known_arguments(strict_slack: FakeSlack) -> None:
    long_section = [{"type": "section", "text": {"type": "mrkdwn", "text": "x" * 3001}}]
    refused = slack_call(strict_slack, "chat.postMessage", channel="C0APPROVE1", text="t", blocks=long_section)
    assert refused["error"] == "invalid_blocks" and "3001" in refused["errors"][0]
    too_many = [{"type": "divider"}] * 51
    assert slack_call(strict_slack, "chat.postMessage", channel="C0APPROVE1", text="t", blocks=too_many)["error"] == (
        "invalid_blocks"
    )
    assert slack_call(strict_slack, "chat.postMessage", channel="C0APPROVE1", text="t", colour="red")["error"] == (
        "invalid_arguments"
    )
    assert slack_call(strict_slack, "chat.postMessage", channel="C0NOSUCH01", text="t")["error"] == "channel_not_found"
    home = {"type": "home", "submit": {"type": "plain_text", "text": "x"}, "blocks": [{"type": "divider"}]}
    assert slack_call(strict_slack, "views.publish", user_id=BOT_USER_ID, view=home)["error"] == "invalid_arguments"
    strict_slack.errors.clear()


def test_fake_slack_takes_five_posts_per_response_url_within_thirty_minutes(strict_slack: FakeSlack) -> None:
    for _ in range(5):
        assert httpx.post(f"{strict_slack.url}/response/r-1", json={"text": "hi"}).status_code == 200
    used = httpx.post(f"{strict_slack.url}/response/r-1", json={"text": "hi"})
    assert (used.status_code, used.text) == (404, "used_url")
    strict_slack.expire_response_url("r-2")
    expired = httpx.post(f"{strict_slack.url}/response/r-2", json={"text": "hi"})
    assert (expired.status_code, expired.text) == (404, "expired_url")
    assert len(strict_slack.responses_for("r-1")) == 5 and strict_slack.responses_for("r-2") == []


def said_to(slack: FakeSlack, user_id: str) -> list[str]:
    """What reached `user_id` other than through a response_url: ephemerals and DMs."""
    return [e.text for e in slack.ephemerals_to(user_id)] + [m.all_text() for m in slack.dms_to(user_id)]


def test_a_filing_whose_reply_slack_no_longer_takes_is_told_another_way(
    bot: BotUnderTest, fake_slack: FakeSlack, world: World
) -> None:
    """The answer comes after the command's response_url has lapsed: Slack answers 404, which
    slack_sdk returns rather than raises. The request is filed, and Alice is told so another way,
    once, not that something went wrong (which would send her to file it again)."""
    fake_slack.expire_response_urls()
    reply = bot.command('request "Acme Production" DNS need to rotate records', user_id=ALICE)
    assert reply.response.status_code == 200 and reply.response.text == ""
    assert stored(bot, 1).status == "pending"
    told = [text for text in said_to(fake_slack, ALICE) if "#1" in text or "went wrong" in text]
    assert len(told) == 1 and "Request #1 filed" in told[0], told
    assert fake_slack.responses_for(reply.response_id) == []


def test_a_click_whose_reply_slack_no_longer_takes_is_told_another_way(
    bot: BotUnderTest, fake_slack: FakeSlack, world: World
) -> None:
    """Bob clicks Approve on his copy of a request Alice cancelled meanwhile (his client had not
    redrawn it yet), and the click's response_url no longer takes posts: he still reads why
    nothing happened."""
    request_id = file_request(bot, fake_slack, ALICE)
    as_bob_saw_it = copy.deepcopy(roots_of(fake_slack, request_id)[0])
    assert "cancelled" in answer(bot, fake_slack, f"cancel {request_id}", ALICE)
    fake_slack.expire_response_urls()
    bot.click(as_bob_saw_it, "request_approve", user_id=BOB)
    assert any(f"Request #{request_id} was cancelled by the requester" in text for text in said_to(fake_slack, BOB))
    assert stored(bot, request_id).status == "cancelled"


def test_a_deny_form_slack_refuses_to_open_is_told_to_the_clicker(
    bot: BotUnderTest, fake_slack: FakeSlack, world: World
) -> None:
    request_id = file_request(bot, fake_slack, ALICE)
    fake_slack.inject(SlackFault(method="views.open", status=200, error="expired_trigger_id"))
    bot.click(roots_of(fake_slack, request_id)[0], "request_deny", user_id=BOB)
    told = fake_slack.responses_for(bot.last_response_id)
    assert told and "did not open the form (expired_trigger_id)" in told[-1]["text"]
    assert stored(bot, request_id).status == "pending"


def test_a_post_that_met_a_5xx_is_not_sent_twice(bot: BotUnderTest, fake_slack: FakeSlack, world: World) -> None:
    """Slack's 5xx are ambiguous: the message may be in the channel already (slack_sdk's
    ServerErrorRetryHandler used to post it again)."""
    fake_slack.inject(SlackFault(method="chat.postMessage", status=500, error="internal_error", after_effect=True))
    file_request(bot, fake_slack, ALICE)
    to_bob = [m for m in fake_slack.dms_to(BOB) if "Access request #1" in m.all_text()]
    assert len(to_bob) == 1, [m.text for m in fake_slack.dms_to(BOB)]
    assert stored(bot, 1).status == "pending"
    fake_slack.errors.clear()


def test_root_posts_slack_refused_close_the_request_as_undelivered(
    bot: BotUnderTest, fake_slack: FakeSlack, world: World
) -> None:
    """Slack's own refusal (HTTP 200, `ok: false`) means not posted: unlike a 5xx, the request is
    closed and the requester told, free to ask again."""
    fake_slack.inject(SlackFault(method="chat.postMessage", status=200, error="is_archived", times=2))
    said = answer(bot, fake_slack, 'request "Acme Production" DNS need to rotate records', ALICE)
    assert "could not be delivered to the approvers" in said and "is_archived" in said, said
    assert stored(bot, 1).status == "failed"


@pytest.mark.parametrize("answer_lost", ["no answer", "5xx"])
def test_root_posts_slack_never_answered_leave_the_request_open_and_say_so(
    bot: BotUnderTest, fake_slack: FakeSlack, world: World, answer_lost: str
) -> None:
    """Both approvers' DMs lose their connection (or meet a 5xx) after Slack took them: the bot
    cannot know they arrived, so the request stays pending (not closed as undelivered), the
    requester is told Slack did not confirm it, nothing is posted twice, and an approver who got it
    can still decide."""
    if answer_lost == "5xx":
        lost = SlackFault(method="chat.postMessage", status=500, error="internal_error", after_effect=True, times=2)
    else:
        lost = SlackFault(method="chat.postMessage", drop=True, after_effect=True, times=2)
    fake_slack.inject(lost)
    said = answer(bot, fake_slack, 'request "Acme Production" DNS need to rotate records', ALICE)
    assert "filed" in said and f"Slack did not confirm delivery to <@{BOB}>, <@{CAROL}>" in said, said
    assert "`/cf-access cancel 1` and ask again" in said
    assert stored(bot, 1).status == "pending"
    got = [root.channel for root in roots_of(fake_slack, 1)]
    assert sorted(got) == sorted([fake_slack.dm_channel(BOB), fake_slack.dm_channel(CAROL)]), "one each"
    bot.click(roots_of(fake_slack, 1)[0], "request_approve", user_id=BOB)
    assert stored(bot, 1).status == "invited"
    assert any("sent an invite" in dm.text for dm in fake_slack.dms_to(ALICE))


def test_an_html_page_instead_of_slack_s_answer_is_named_by_its_status_not_shown(
    bot: BotUnderTest, fake_slack: FakeSlack, world: World
) -> None:
    """A proxy answers the approvers' DMs with a 403 HTML page: the requester reads `http_403`,
    not markup (slack_sdk puts the page's first 100 characters in the error)."""
    fake_slack.inject(SlackFault(method="chat.postMessage", status=403, html=True, times=2))
    said = answer(bot, fake_slack, 'request "Acme Production" DNS need to rotate records', ALICE)
    assert "could not be delivered to the approvers" in said and "http_403" in said, said
    assert "html" not in said.lower() and "proxy says no" not in said, said


def test_a_dm_whose_conversation_could_not_be_opened_counts_as_not_sent(
    bot: BotUnderTest, fake_slack: FakeSlack, world: World
) -> None:
    """Posting to the approvers' user ids answers channel_not_found, and opening the conversation
    then meets a 5xx: no message went out, so the request is closed as undelivered, not left
    pending as if Slack might have it."""
    for handler in bot.services.slack.client.retry_handlers:  # retried at once: no real backoff sleeps
        handler.interval_calculator = FixedValueRetryIntervalCalculator(0)
    fake_slack.inject(SlackFault(method="chat.postMessage", status=200, error="channel_not_found", times=2))
    fake_slack.inject(SlackFault(method="conversations.open", status=500, error="internal_error", times=10))
    said = answer(bot, fake_slack, 'request "Acme Production" DNS need to rotate records', ALICE)
    assert "could not be delivered to the approvers" in said and "internal_error" in said, said
    assert stored(bot, 1).status == "failed"
    assert fake_slack.roots() == []


def test_root_posts_that_never_left_close_the_request_as_undelivered(
    bot: BotUnderTest, fake_slack: FakeSlack, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No connection could be made for either approver's DM (urllib's URLError, as the gateway
    raises when nothing listens: see test_connections): nothing was sent, so the request is closed
    and the requester told, free to ask again."""

    def unreachable(*_args: Any, **_kwargs: Any) -> Any:
        raise URLError(ConnectionRefusedError(111, "Connection refused"))

    monkeypatch.setattr(bot.services.slack, "dm", unreachable)
    said = answer(bot, fake_slack, 'request "Acme Production" DNS need to rotate records', ALICE)
    assert "could not be delivered to the approvers" in said and "slack_unreachable" in said, said
    assert stored(bot, 1).status == "failed"


def test_one_failed_approver_lookup_loses_only_that_approver(
    bot: BotUnderTest, fake_slack: FakeSlack, world: World
) -> None:
    fake_slack.inject(SlackFault(method="users.lookupByEmail", status=200, error="internal_error"))
    request_id = file_request(bot, fake_slack, ALICE)
    channels = {root.channel for root in roots_of(fake_slack, request_id)}
    assert fake_slack.dm_channel(CAROL) in channels, "the other approver still gets the request"


# --- Cloudflare ------------------------------------------------------------------------------------------


@pytest.fixture
def cf() -> Iterator[FakeCloudflare]:
    fake = FakeCloudflare(token="cf-reality-token").start()
    yield fake
    fake.stop()
    assert fake.schema_violations == []


def client_for(fake: FakeCloudflare) -> CloudflareClient:
    return CloudflareClient(
        base_url=fake.url + "/client/v4",
        credentials=CloudflareCredentials(token=SecretStr("cf-reality-token")),
        timeout=2.0,
        sleep=lambda _s: None,
    )


def test_listings_end_only_at_the_last_page_even_without_total_pages(cf: FakeCloudflare) -> None:
    """A server may answer fewer items than per_page and omit total_pages (the 2024 schema has none):
    a short page is not the end."""
    account = cf.add_account("Big")
    for n in range(57):
        cf.add_member(account, f"m{n}@example.com", [DNS["id"]])
    cf.total_pages_in_listings = False
    cf.max_per_page = 20
    members = client_for(cf).list_members(account)
    assert len(members) == 57
    pages = [call.query["page"] for call in cf.calls_to("GET", r"/members$")]
    assert pages == ["1", "2", "3", "4"], "read to the first empty page"


def test_unreadable_and_untidy_items_never_fail_a_listing(cf: FakeCloudflare, caplog: pytest.LogCaptureFixture) -> None:
    account = cf.add_account("Untidy")
    cf.add_member(account, "ok@example.com", [DNS["id"]])
    cf.add_member(account, "odd@example.com", [DNS["id"]], status="suspended")
    nouser = cf.add_member(account, "nouser@example.com", [DNS["id"]])
    cf.accounts[account]["members"][nouser]["user"] = None
    cf.add_raw_member(account, {"status": "accepted", "roles": None})
    with caplog.at_level(logging.WARNING):
        members = client_for(cf).list_members(account)
    by_email = {member.contact_email: member for member in members}
    assert set(by_email) == {"ok@example.com", "odd@example.com", "nouser@example.com"}
    assert by_email["odd@example.com"].status == "suspended" and not by_email["odd@example.com"].accepted
    assert any("skipped item" in record.getMessage() for record in caplog.records)
    roles = client_for(cf).list_roles(account)
    assert all(isinstance(role.description, str) for role in roles), "null descriptions read as empty"


def test_a_proxy_html_page_is_a_server_error_without_its_markup(cf: FakeCloudflare) -> None:
    account = cf.add_account("Proxy")
    cf.inject(Fault("GET", r"/members$", status=502, html=True, times=5))
    with pytest.raises(CloudflareServerError) as raised:
        client_for(cf).list_members(account)
    assert raised.value.status == 502 and "<html" not in str(raised.value)
    assert "text/html instead of Cloudflare's JSON" in str(raised.value)


@pytest.mark.parametrize("model", ["roles", "policies"])
def test_the_create_answer_without_roles_still_records_the_granted_roles(
    make_bot: BotFactory, fake_slack: FakeSlack, fake_cf: FakeCloudflare, world: World, model: str
) -> None:
    bot = make_bot(cloudflare_access_model=model)
    request_id = file_request(bot, fake_slack, ALICE)
    bot.click(roots_of(fake_slack, request_id)[0], "request_approve", user_id=BOB)
    post = fake_cf.calls_to("POST", r"/members$")[-1]
    if model == "roles":
        assert post.body == {"email": "alice@example.com", "roles": [DNS["id"]]}
    else:
        assert post.body["policies"][0]["permission_groups"] == [{"id": PG_DNS["id"]}]
    assert stored(bot, request_id).status == "invited"
    # Asking again for what the invite already grants is answered from the member index, by name.
    said = answer(bot, fake_slack, 'request "Acme Production" DNS again please', ALICE)
    assert "open request" in said or "already a member" in said


def test_a_502_html_page_on_the_invite_is_checked_before_sending_again(
    bot: BotUnderTest, fake_slack: FakeSlack, fake_cf: FakeCloudflare, world: World
) -> None:
    request_id = file_request(bot, fake_slack, ALICE)
    fake_cf.inject(Fault("POST", r"/members$", status=502, html=True, after_effect=True))
    bot.click(roots_of(fake_slack, request_id)[0], "request_approve", user_id=BOB)
    assert stored(bot, request_id).status == "invited"
    assert len(fake_cf.members_with_email(world.acme, "alice@example.com")) == 1, "adopted, not invited twice"


def test_an_approver_on_a_late_page_is_found_when_pages_are_short(
    make_bot: BotFactory, fake_slack: FakeSlack, fake_cf: FakeCloudflare, world: World
) -> None:
    late = fake_cf.add_account("Late Pages")
    for n in range(45):
        fake_cf.add_member(late, f"staff{n}@example.com", [DNS["id"]])
    fake_cf.add_member(late, "carol@example.com", [SUPER_ADMIN["id"]])
    fake_cf.total_pages_in_listings = False
    fake_cf.max_per_page = 20
    bot = make_bot()
    request_id = file_request(bot, fake_slack, ALICE, 'request "Late Pages" DNS to fix records')
    assert {root.channel for root in roots_of(fake_slack, request_id)} == {fake_slack.dm_channel(CAROL)}


def test_the_request_form_is_answered_without_waiting_on_cloudflare(
    bot: BotUnderTest, fake_slack: FakeSlack, fake_cf: FakeCloudflare, world: World
) -> None:
    from tests.test_modal import form_values, open_modal

    view = open_modal(bot, fake_slack)
    bot.clock.advance(__import__("datetime").timedelta(minutes=5))  # every cached entry has expired
    fake_cf.inject(
        Fault("GET", r"(/accounts|/roles|/permission_groups)$", status=200, delay=2.5, after_effect=True, times=20)
    )
    response = bot.submit_view(view, form_values(world.acme, [PG_DNS["id"]], "rotating records"), user_id=ALICE)
    acked_after = response.elapsed.total_seconds()
    assert response.status_code == 200 and response.text == ""
    assert acked_after < 1.5, f"the submission waited {acked_after:.1f} s for its ack"
    assert "#1" in texts(fake_slack.dms_to(ALICE)) and stored(bot, 1).status == "pending"
