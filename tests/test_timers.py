"""Deadlines: one thread runs every callback when its time comes."""

from __future__ import annotations

import threading

from bot.core.timers import Deadlines


def test_an_earlier_deadline_wakes_the_thread_waiting_for_a_later_one() -> None:
    deadlines = Deadlines("test")
    ran: list[str] = []
    done = threading.Event()
    deadlines.after(3600, lambda: ran.append("in an hour"))
    first_wait = threading.Event()
    deadlines.after(0, first_wait.set)  # the thread has started and is now waiting for the hour
    assert first_wait.wait(5)
    deadlines.after(3000, lambda: ran.append("later, but before the hour"))
    deadlines.after(0, lambda: (ran.append("now"), done.set()))
    assert done.wait(5), "a deadline due now waited behind one due in an hour"
    assert ran == ["now"]


def test_deadlines_run_in_order_and_a_cancelled_one_never_runs() -> None:
    deadlines = Deadlines("test")
    ran: list[int] = []
    done = threading.Event()
    cancelled = deadlines.after(0.02, lambda: ran.append(99))
    for n in (3, 1, 2):
        deadlines.after(0.01 * n, lambda n=n: ran.append(n))
    deadlines.after(0.05, done.set)
    cancelled.cancel()
    assert done.wait(5)
    assert ran == [1, 2, 3]
