"""Cloudflare API budget: a burst of 100 requests for one account costs about one POST per
approved request plus a constant number of reads."""

from __future__ import annotations

from tests.conftest import BOB, World
from tests.fakes.cloudflare import FakeCloudflare
from tests.fakes.slack import FakeSlack
from tests.harness import BotUnderTest
from tests.helpers import file_request, roots_of, stored

BURST = 100


def test_burst_of_100_requests(bot: BotUnderTest, fake_slack: FakeSlack, fake_cf: FakeCloudflare, world: World) -> None:
    requesters = [fake_slack.add_user(f"U0BURST{n:03d}", f"burst{n}@example.com", f"burst{n}") for n in range(BURST)]
    calls_before = len(fake_cf.calls)
    for requester in requesters:
        request_id = file_request(bot, fake_slack, requester)
        bot.click(roots_of(fake_slack, request_id)[0], "request_approve", user_id=BOB)
        assert stored(bot, request_id).status == "invited"
    calls = fake_cf.calls[calls_before:]
    posts = [call for call in calls if call.method == "POST"]
    reads = [call for call in calls if call.method == "GET"]
    assert len(posts) == BURST
    per_request = len(calls) / BURST
    print(
        f"\nCloudflare calls for {BURST} filed+approved requests: {len(calls)} "
        f"({len(posts)} POST, {len(reads)} GET) = {per_request:.2f} per approved request"
    )
    # One confirmation read of the approver per decision (SPEC §5.1); listings do not grow with the burst.
    confirmations = [call for call in reads if "/members/" in call.path]
    assert len(confirmations) == BURST
    listings = [call for call in reads if call not in confirmations]
    assert len(listings) <= 10, f"listings must not grow with the burst: {[(c.method, c.path) for c in listings]}"
    assert per_request <= 2.1  # the POST and the confirmation read (SPEC §6)
