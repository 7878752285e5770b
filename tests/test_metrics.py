"""Prometheus metrics at `GET /metrics` (issue #15): unsigned, in the text exposition format, off
the Slack request path, and moving with what the bot does."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from bot.ops.metrics import endpoint_of, kind_of
from tests.conftest import ALICE, BOB, MALLORY, World
from tests.fakes.cloudflare import FakeCloudflare, Fault
from tests.fakes.slack import FakeSlack
from tests.harness import BotUnderTest
from tests.helpers import file_request, roots_of, stored

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(bot: BotUnderTest) -> Samples:
    """GET /metrics as Prometheus does: no Slack signature, text format."""
    response = bot.http.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def test_metrics_are_served_unsigned_and_name_what_operators_watch(bot: BotUnderTest) -> None:
    samples = scrape(bot)
    names = {name for name, _ in samples}
    for expected in (
        "cf_access_work_queue_depth",
        "cf_access_requests",
        "cf_access_cloudflare_paused_seconds",
        "process_resident_memory_bytes",
    ):
        assert expected in names, expected
    text = bot.http.get("/metrics").text
    for family in (
        "cf_access_ack_seconds",
        "cf_access_slack_calls_total",
        "cf_access_cloudflare_calls_total",
        "cf_access_cloudflare_rate_limit_pauses_total",
        "cf_access_cloudflare_budget_wait_seconds",
        "cf_access_cloudflare_budget_refusals_total",
        "cf_access_sweep_seconds",
    ):
        assert f"# TYPE {family.removesuffix('_total')}" in text, family
    assert value(samples, "cf_access_work_queue_depth", pool="work") == 0
    # The health check is unchanged beside it.
    assert bot.http.get("/healthz").json()["status"] == "ok"


def test_metrics_move_with_requests_clicks_calls_and_sweeps(
    bot: BotUnderTest, fake_slack: FakeSlack, fake_cf: FakeCloudflare, world: World
) -> None:
    before = scrape(bot)
    assert "/cf-access" in bot.command("help", user_id=ALICE).ack_text
    request_id = file_request(bot, fake_slack, ALICE)
    bot.click(roots_of(fake_slack, request_id)[0], "request_approve", user_id=BOB)
    assert stored(bot, request_id).status == "invited"
    after = scrape(bot)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("cf_access_ack_seconds_count", kind="command") == 2
    assert moved("cf_access_ack_seconds_count", kind="block_actions") == 1
    assert moved("cf_access_slack_calls_total", method="chat.postMessage", status="200") >= 3
    assert moved("cf_access_slack_calls_total", method="response_url", status="200") >= 1
    members = "/accounts/{id}/members"
    assert moved("cf_access_cloudflare_calls_total", method="POST", endpoint=members, status="200") == 1
    assert moved("cf_access_cloudflare_calls_total", method="GET", endpoint=members + "/{id}", status="200") == 1
    assert value(after, "cf_access_requests", state="invited") == 1

    # A 429 is counted by status, and as a pause of every Cloudflare call.
    fake_cf.inject(Fault("GET", r"/members/", status=429, headers={"Retry-After": "30"}))
    second = file_request(bot, fake_slack, MALLORY)
    bot.click(roots_of(fake_slack, second)[0], "request_approve", user_id=BOB)
    paused = scrape(bot)
    assert (
        value(paused, "cf_access_cloudflare_rate_limit_pauses_total")
        - value(after, "cf_access_cloudflare_rate_limit_pauses_total")
        == 1
    )
    assert value(paused, "cf_access_cloudflare_calls_total", method="GET", endpoint=members + "/{id}", status="429")
    assert value(paused, "cf_access_cloudflare_paused_seconds") == 30

    bot.runtime.sweeper.run_once()
    assert value(scrape(bot), "cf_access_sweep_seconds_count") - value(paused, "cf_access_sweep_seconds_count") == 1


def test_cloudflare_endpoints_and_slack_kinds_are_labels_of_bounded_cardinality() -> None:
    account, member = "0123456789abcdef0123456789abcdef", "fedcba9876543210fedcba9876543210"
    assert endpoint_of(f"/accounts/{account}/members/{member}") == "/accounts/{id}/members/{id}"
    assert endpoint_of(f"/accounts/{account}/roles?page=2") == "/accounts/{id}/roles"
    assert endpoint_of("/user/tokens/verify") == "/user/tokens/verify"
    assert endpoint_of(f"/accounts/{account}/iam/resource_groups") == "/accounts/{id}/iam/resource_groups"
    assert kind_of({"command": "/cf-access", "text": "help"}) == "command"
    assert kind_of({"type": "event_callback", "event": {}}) == "event"
    assert kind_of({"type": "view_submission"}) == "view_submission"
    assert kind_of({"type": "something new"}) == "other"
