"""Keep-alive to Slack and Cloudflare (issue #15): calls share a few pooled connections instead of
opening one each (in production, a TLS handshake each). The fakes count accepted connections.
And Block Kit serialisation, the other per-call cost the issue's profile named."""

from __future__ import annotations

import pytest
from pydantic import SecretStr
from slack_sdk.errors import SlackObjectFormationError
from slack_sdk.models.blocks import ButtonElement, SectionBlock

from bot.cloudflare.client import CloudflareClient, CloudflareCredentials
from bot.slack.gateway import SlackError, SlackGateway, make_web_client
from bot.slack.transport import PooledRespond
from bot.slack.validation import cache_block_kit_validators
from tests.conftest import ALICE, BOB, World
from tests.fakes.cloudflare import FakeCloudflare
from tests.fakes.slack import FakeSlack, SlackFault
from tests.harness import BOT_TOKEN, CF_TOKEN, BotUnderTest
from tests.helpers import file_request, roots_of, stored


def test_fifty_slack_calls_open_one_connection(fake_slack: FakeSlack) -> None:
    client = make_web_client(BOT_TOKEN, fake_slack.url + "/api/")
    slack = SlackGateway(client)
    respond = PooledRespond(response_url=f"{fake_slack.url}/response/keepalive", http=client.http)
    before = fake_slack.connections
    for n in range(20):
        assert slack.profile(ALICE).email == "alice@example.com"
        slack.post("C0OPS00001", f"message {n}")
    for n in range(10):
        respond(text=f"reply {n}", response_type="ephemeral")
    assert len(fake_slack.responses_for("keepalive")) == 10
    assert fake_slack.connections - before <= 2, f"{fake_slack.connections - before} connections for 50 calls"
    client.http.close()


def test_the_sdk_still_retries_and_raises_over_the_pool(fake_slack: FakeSlack) -> None:
    """Only the last hop is ours: a 429 is retried by slack_sdk's handler after Retry-After, and a
    5xx on a post (which may have been posted) is not, and surfaces as the SDK's error."""
    client = make_web_client(BOT_TOKEN, fake_slack.url + "/api/")
    slack = SlackGateway(client)
    fake_slack.inject(SlackFault(method="users.info", status=429, retry_after=0))
    assert slack.profile(ALICE).email == "alice@example.com"
    assert len(fake_slack.calls_to("users.info")) == 2
    fake_slack.inject(SlackFault(method="chat.postMessage", status=500, error="internal_error"))
    with pytest.raises(SlackError) as refused:
        slack.post("C0OPS00001", "once")
    assert refused.value.code == "internal_error" and refused.value.response.status_code == 500
    assert len(fake_slack.calls_to("chat.postMessage")) == 1
    client.http.close()


def test_fifty_cloudflare_calls_open_one_connection(fake_cf: FakeCloudflare, world: World) -> None:
    client = CloudflareClient(
        base_url=fake_cf.url + "/client/v4", credentials=CloudflareCredentials(token=SecretStr(CF_TOKEN))
    )
    before = fake_cf.connections
    for _ in range(25):
        client.get_account(world.acme)
        client.get_member(world.acme, world.bob_member)
    assert fake_cf.connections - before <= 2, f"{fake_cf.connections - before} connections for 50 calls"
    client.close()


def test_the_bot_reuses_its_connections(
    bot: BotUnderTest, fake_slack: FakeSlack, fake_cf: FakeCloudflare, world: World
) -> None:
    """Filing and approving ten requests (dozens of Slack calls, listeners' response_url replies
    included, and twenty Cloudflare calls) opens a handful of connections, not one per call."""
    requesters = [fake_slack.add_user(f"U0KEEP{n:04d}", f"keep{n}@example.com", f"keep{n}") for n in range(10)]
    slack_before, cloudflare_before = fake_slack.connections, fake_cf.connections
    slack_calls_before, cloudflare_calls_before = len(fake_slack.calls), len(fake_cf.calls)
    for requester in requesters:
        request_id = file_request(bot, fake_slack, requester)
        bot.click(roots_of(fake_slack, request_id)[0], "request_approve", user_id=BOB)
        assert stored(bot, request_id).status == "invited"
    slack_calls = len(fake_slack.calls) - slack_calls_before + len(requesters)  # + response_url replies
    cloudflare_calls = len(fake_cf.calls) - cloudflare_calls_before
    slack_opened = fake_slack.connections - slack_before
    cloudflare_opened = fake_cf.connections - cloudflare_before
    print(
        f"\n{slack_calls} Slack calls over {slack_opened} connections, {cloudflare_calls} Cloudflare over {cloudflare_opened}"
    )
    assert slack_calls >= 50 and cloudflare_calls >= 20
    assert slack_opened <= 5 and cloudflare_opened <= 5


def test_block_kit_is_validated_as_before_with_the_validators_found_once() -> None:
    """The serving process caches which validators each Block Kit class has (issue #15: most of
    the CPU of a message was finding them); the validators themselves still run and still refuse."""
    cache_block_kit_validators()
    button = ButtonElement(text="Approve", action_id="request_approve", value="1", style="primary")
    assert button.to_dict()["style"] == "primary"
    with pytest.raises(SlackObjectFormationError, match="style"):
        ButtonElement(text="Approve", action_id="request_approve", value="1", style="loud").to_dict()
    with pytest.raises(SlackObjectFormationError, match="text"):
        SectionBlock(text="x" * 3001).to_dict()


def test_a_dm_to_someone_new_is_one_post_and_later_ones_reuse_the_conversation(fake_slack: FakeSlack) -> None:
    """Slack takes a user id as `channel` and answers with the DM's id: no conversations.open
    (Tier 3, once per new person: an approval burst would spend the tier on it)."""
    client = make_web_client(BOT_TOKEN, fake_slack.url + "/api/")
    slack = SlackGateway(client)
    first = slack.dm(ALICE, "first")
    second = slack.dm(ALICE, "second")
    assert first.channel_id == second.channel_id == fake_slack.dm_channel(ALICE)
    assert [m.text for m in fake_slack.dms_to(ALICE)] == ["first", "second"]
    assert [args["channel"] for args in fake_slack.calls_to("chat.postMessage")] == [ALICE, first.channel_id]
    assert fake_slack.calls_to("conversations.open") == []

    # Should a workspace refuse user ids as channels, the conversation is opened first.
    fake_slack.inject(SlackFault(method="chat.postMessage", status=200, error="channel_not_found"))
    assert slack.dm(BOB, "via open").channel_id == fake_slack.dm_channel(BOB)
    assert [m.text for m in fake_slack.dms_to(BOB)] == ["via open"]
    assert len(fake_slack.calls_to("conversations.open")) == 1

    # A deactivated person's DM cannot be opened: the refusal reaches the caller, nothing is posted.
    gone = fake_slack.add_user("U0GONE0001", "gone@example.com", "gone", deleted=True)
    fake_slack.inject(SlackFault(method="chat.postMessage", status=200, error="channel_not_found"))
    with pytest.raises(SlackError) as refused:
        slack.dm(gone, "to nobody")
    assert refused.value.code == "user_disabled"
    assert fake_slack.dms_to(gone) == []
    client.http.close()
