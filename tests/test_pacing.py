"""The bot paces itself under CLOUDFLARE_RATE_LIMIT (issue #15, SPEC §6): one budget shared by
every Cloudflare call of the process, so that it never finds Cloudflare's limit by hitting it.

Time is fake throughout: the budget decides on a FrozenClock that its sleep moves forward, and the
fake Cloudflare's scaled-down limit reads the same clock, so a minute of pacing takes no time."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import SecretStr

from bot.cloudflare.client import CloudflareClient, CloudflareCredentials
from bot.cloudflare.errors import CloudflareRateLimited
from bot.cloudflare.pacing import CloudflareBudget, CloudflareBudgetSpent, CloudflarePause, CloudflarePaused
from bot.core.clock import FrozenClock
from bot.core.config import ConfigError, RateLimit, Settings, load_settings
from tests.conftest import BotFactory, World
from tests.fakes.cloudflare import FakeCloudflare

TOKEN = "cf-pacing-test-token"
EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


class FakeTime:
    """A FrozenClock whose sleep moves it forward, as seconds for the fake server too."""

    def __init__(self) -> None:
        self.clock = FrozenClock()
        self.slept: list[float] = []
        self._lock = threading.Lock()

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.slept.append(seconds)
            self.clock.advance(timedelta(seconds=seconds))

    def seconds(self) -> float:
        return (self.clock.now() - EPOCH).total_seconds()


@pytest.fixture
def cf() -> Iterator[FakeCloudflare]:
    fake = FakeCloudflare(token=TOKEN).start()
    yield fake
    fake.stop()


def _client(cf: FakeCloudflare, time: FakeTime, budget: CloudflareBudget | None) -> CloudflareClient:
    return CloudflareClient(
        base_url=cf.url + "/client/v4",
        credentials=CloudflareCredentials(token=SecretStr(TOKEN)),
        timeout=2.0,
        sleep=time.sleep,
        pause=CloudflarePause(time.clock),
        budget=budget,
    )


def _most_in_any_window(moments: list[float], window: float) -> int:
    return max(sum(1 for other in moments if start <= other < start + window) for start in moments)


def test_a_burst_is_spread_out_and_never_exceeds_the_window() -> None:
    time = FakeTime()
    budget = CloudflareBudget(10, 10.0, clock=time.clock, sleep=time.sleep)
    sent: list[float] = []
    for _ in range(60):
        with budget.spend():
            sent.append(time.seconds())
    assert _most_in_any_window(sent, 10.0) == 10, "never more than the budget in a rolling window"
    assert sent[1] == sent[0], "a small burst goes at once"
    assert max(time.slept) <= 10.0, "no call waited longer than the bound"
    # The budget allows 60 calls in 50 s at best (10 at once, then 10 per 10 s): pacing costs little more.
    assert sent[-1] - sent[0] <= 1.25 * 50.0, sent


def test_a_token_comes_back_a_window_after_its_call_ended() -> None:
    """Cloudflare counts a call when it arrives, which is before its answer: counting the window
    from the end of each call keeps the bot under the limit however slow calls are."""
    time = FakeTime()
    budget = CloudflareBudget(1, 10.0, clock=time.clock, sleep=time.sleep)
    with budget.spend():
        time.clock.advance(timedelta(seconds=4))  # a slow call
    budget.acquire()
    assert time.slept == [10.0], "the token came back 10 s after the call ended, not after it began"
    budget.release()


def test_a_call_whose_turn_is_too_far_off_is_refused_at_once_and_costs_nothing() -> None:
    time = FakeTime()
    refused: list[float] = []
    budget = CloudflareBudget(2, 60.0, clock=time.clock, sleep=time.sleep, burst=2, on_refused=refused.append)
    for _ in range(2):
        with budget.spend():
            pass
    with pytest.raises(CloudflareBudgetSpent) as spent:
        budget.acquire()
    # A kind of pause: the invite outbox reschedules on it, a click is told to try again.
    assert isinstance(spent.value, CloudflarePaused) and isinstance(spent.value, CloudflareRateLimited)
    assert spent.value.retry_after == pytest.approx(60.0) and "again in 60 s" in str(spent.value)
    assert time.slept == [] and refused == [pytest.approx(60.0)], "refused without waiting"
    time.clock.advance(timedelta(seconds=60))
    with budget.spend():
        pass
    assert time.slept == [], "the refusal took no token: the next call after the window goes at once"


def test_the_client_paces_a_burst_under_the_fake_limit_without_a_429(cf: FakeCloudflare) -> None:
    account = cf.add_account("Acme")
    time = FakeTime()
    cf.limit_rate(10, 10.0, clock=time.seconds)
    client = _client(cf, time, CloudflareBudget(10, 10.0, clock=time.clock, sleep=time.sleep))
    started = time.seconds()
    for _ in range(50):
        client.get_account(account)
    assert cf.rate_limited == 0, "paced under the limit: not one 429"
    assert len(cf.calls) == 50
    elapsed = time.seconds() - started
    assert 40.0 <= elapsed <= 1.25 * 40.0, f"50 calls at 10 per 10 s take 40 s at best; took {elapsed:.1f} s"


def test_concurrent_callers_share_one_budget(cf: FakeCloudflare) -> None:
    account = cf.add_account("Acme")
    time = FakeTime()
    cf.limit_rate(8, 10.0, clock=time.seconds)
    client = _client(cf, time, CloudflareBudget(8, 10.0, clock=time.clock, sleep=time.sleep, max_wait=60.0))
    failures: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(10):
                client.get_account(account)
        except BaseException as error:
            failures.append(error)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == [] and cf.rate_limited == 0 and len(cf.calls) == 40


def test_without_the_budget_the_fake_limit_answers_429_and_pauses_everyone(cf: FakeCloudflare) -> None:
    """The control: the fake enforces the limit as Cloudflare does."""
    account = cf.add_account("Acme")
    time = FakeTime()
    cf.limit_rate(10, 10.0, clock=time.seconds)
    client = _client(cf, time, budget=None)
    for _ in range(10):
        client.get_account(account)
    with pytest.raises(CloudflareRateLimited) as limited:
        client.get_account(account)
    assert limited.value.code == 971 and limited.value.retry_after == 10.0
    with pytest.raises(CloudflarePaused):
        client.get_account(account)  # refused by the pause, without reaching Cloudflare
    assert cf.rate_limited == 1


def test_the_bot_spends_one_budget_for_the_whole_process(
    make_bot: BotFactory, fake_cf: FakeCloudflare, world: World
) -> None:
    """With the clock frozen the budget never refills: whatever the bot's pools try at start-up
    (accounts, roles, members), no more than CLOUDFLARE_RATE_LIMIT calls reach Cloudflare."""
    before = len(fake_cf.calls)
    make_bot(cloudflare_rate_limit="3/1h")
    assert len(fake_cf.calls) - before <= 3


@pytest.mark.parametrize(
    ("text", "expected"),
    [("1200/5m", RateLimit(1200, timedelta(minutes=5))), ("40/10s", RateLimit(40, timedelta(seconds=10)))],
)
def test_cloudflare_rate_limit_is_read_as_calls_per_window(text: str, expected: RateLimit) -> None:
    assert _settings(cloudflare_rate_limit=text).cloudflare_rate_limit == expected


def test_cloudflare_rate_limit_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLOUDFLARE_RATE_LIMIT", "600/5m")
    assert _settings().cloudflare_rate_limit == RateLimit(600, timedelta(minutes=5))


def test_the_default_budget_is_cloudflares_documented_limit() -> None:
    assert _settings().cloudflare_rate_limit == RateLimit(1200, timedelta(minutes=5))


@pytest.mark.parametrize("text", ["1200", "0/5m", "many/5m", "1200/5", "1200/0s", "/5m"])
def test_a_malformed_rate_limit_stops_start_up_naming_the_variable(text: str) -> None:
    with pytest.raises(ConfigError, match=r"^CLOUDFLARE_RATE_LIMIT: .* is not a rate limit"):
        _settings(cloudflare_rate_limit=text)


def _settings(**overrides: str) -> Settings:
    return load_settings(_env_file=None, slack_bot_token="xoxb-1", cloudflare_api_token="t", **overrides)
