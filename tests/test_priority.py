"""Acks first: the work after an ack steps aside while Slack requests are being answered."""

from __future__ import annotations

import threading
import time

import pytest

from bot.core.priority import FOREGROUND, Foreground, mark_background
from tests.conftest import ALICE, BOB, World
from tests.fakes.cloudflare import FakeCloudflare
from tests.fakes.slack import FakeSlack
from tests.harness import BotUnderTest
from tests.helpers import file_request, roots_of


def _in_thread(work: object, *, background: bool) -> tuple[threading.Thread, threading.Event]:
    done = threading.Event()

    def run() -> None:
        if background:
            mark_background()
        work()  # type: ignore[operator]
        done.set()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, done


def test_background_steps_aside_until_the_request_is_answered_and_the_request_path_never_does() -> None:
    foreground = Foreground(longest_pause=30.0)
    answering = foreground.answering()
    answering.__enter__()
    _, background_done = _in_thread(foreground.step_aside, background=True)
    _, request_path_done = _in_thread(foreground.step_aside, background=False)
    assert request_path_done.wait(5), "a thread answering Slack never waits"
    assert not background_done.wait(0.2), "background work waits while a request is answered"
    answering.__exit__(None, None, None)
    assert background_done.wait(5), "and goes on once it is answered"


def test_a_steady_stream_of_requests_only_slows_background_work_down() -> None:
    foreground = Foreground(longest_pause=0.05)
    with foreground.answering():
        started = time.monotonic()
        _, done = _in_thread(foreground.step_aside, background=True)
        assert done.wait(5), "each pause is bounded, so background work still makes progress"
        assert 0.04 <= time.monotonic() - started < 5


def test_an_invite_waits_while_slack_requests_are_answered_and_the_click_is_acked_at_once(
    bot: BotUnderTest,
    fake_slack: FakeSlack,
    fake_cf: FakeCloudflare,
    world: World,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Through the running server: the click's follow-up (approval, invite) waits at its first
    database or API call while another Slack request is being answered, and goes on after."""
    request_id = file_request(bot, fake_slack, ALICE)
    root = roots_of(fake_slack, request_id)[0]
    monkeypatch.setattr(FOREGROUND, "_longest_pause", 30.0)
    with FOREGROUND.answering():  # another request, slow to answer, is in flight
        clicked = time.monotonic()
        response = bot.click(root, "request_approve", user_id=BOB, wait=False)
        assert response.status_code == 200 and time.monotonic() - clicked < 2, "the ack itself never waits"
        assert fake_cf.wait_for_call("POST", r"/members$", timeout=0.3) == [], "the invite stepped aside"
    assert len(fake_cf.wait_for_call("POST", r"/members$", timeout=10)) == 1, "and is sent once it is answered"
