"""The cache under the directory: a failure remembered briefly, a partial answer kept briefly."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest

from bot.core.clock import FrozenClock
from bot.core.ttl_cache import TtlCache


class Outage(Exception):
    pass


def remembering(clock: FrozenClock) -> TtlCache[str, str]:
    """A cache that remembers an Outage for 30 s; values stay fresh for a minute."""
    return TtlCache(clock, timedelta(minutes=1), failures=(Outage,), failure_ttl=timedelta(seconds=30))


def test_a_remembered_failure_is_raised_without_loading_until_it_lapses() -> None:
    clock = FrozenClock()
    cache = remembering(clock)
    loads: list[str] = []

    def failing() -> str:
        loads.append("tried")
        raise Outage("no answer")

    with pytest.raises(Outage):
        cache.get("acme", failing)
    with pytest.raises(Outage):
        cache.get("acme", failing, fresh=True)  # a fresh read is not a reason to ask again
    assert loads == ["tried"]
    clock.advance(timedelta(seconds=31))
    assert cache.get("acme", lambda: "answered") == "answered"
    assert cache.get("acme", failing) == "answered"  # cached: the success ended the memory


def test_failures_not_named_are_not_remembered() -> None:
    cache = remembering(FrozenClock())

    def broken() -> str:
        raise ValueError("a bug, not an outage")

    with pytest.raises(ValueError):
        cache.get("acme", broken)
    assert cache.get("acme", lambda: "answered") == "answered"


def test_a_value_put_ends_a_remembered_failure() -> None:
    cache = remembering(FrozenClock())

    def failing() -> str:
        raise Outage("no answer")

    with pytest.raises(Outage):
        cache.get("acme", failing)
    cache.put("acme", "recorded")  # e.g. the bot itself just learned the answer
    assert cache.peek("acme") == "recorded"
    assert cache.get("acme", lambda: "asked again", fresh=True) == "asked again"


def test_ttl_of_keeps_a_partial_answer_for_less_time() -> None:
    clock = FrozenClock()
    cache: TtlCache[str, str] = TtlCache(
        clock,
        timedelta(minutes=1),
        ttl_of=lambda value: timedelta(seconds=30) if value.endswith("partial") else timedelta(minutes=1),
    )
    cache.put("acme", "partial")
    cache.put("globex", "whole")
    clock.advance(timedelta(seconds=31))
    assert cache.peek("acme") is None
    assert cache.peek("globex") == "whole"


def test_callers_waiting_on_a_load_that_fails_get_its_failure_without_loading_again() -> None:
    """A burst of clicks during an outage: one load, one wait through its retries, not one each."""
    cache = remembering(FrozenClock())
    started, release = threading.Event(), threading.Event()
    loads: list[str] = []
    outcomes: list[str] = []

    def slow_failure() -> str:
        loads.append("tried")
        started.set()
        release.wait(5)
        raise Outage("no answer")

    def caller() -> None:
        try:
            cache.get("acme", slow_failure)
        except Outage:
            outcomes.append("outage")

    first = threading.Thread(target=caller)
    first.start()
    assert started.wait(5)
    others = [threading.Thread(target=caller) for _ in range(4)]
    for thread in others:
        thread.start()
    release.set()
    for thread in [first, *others]:
        thread.join(5)
    assert outcomes == ["outage"] * 5
    assert loads == ["tried"]
