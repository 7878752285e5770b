"""Acks first: background work steps aside while a Slack request is being answered.

The work after an ack (Cloudflare calls, messages, the audit) runs in the same interpreter as the
acks of the requests that follow, and one lock (the GIL) lets one thread run Python at a time: a
burst of approvals made every later ack queue behind the earlier ones' follow-up work. Slack gives
an ack 3 s, and people feel the wait of a button; the follow-up work is not timed by anyone.

So background threads (the work pools) pause at their I/O points (a database session, a Slack or
Cloudflare call) while any Slack request is being answered, for LONGEST_PAUSE at most each time, so
that they make progress even under a steady stream of requests. The request path never pauses.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

#: The longest one background step waits for the requests being answered. A follow-up has about
#: fifteen such steps, so under an unbroken stream of requests it still finishes in a second or two;
#: 20 ms halved nothing (Approve acks at 16 concurrent: p99 101-116 ms at 20 ms, 66-75 ms at 100 ms).
LONGEST_PAUSE = 0.1

_thread = threading.local()


def mark_background() -> None:
    """Run in each background pool thread once (a pool initializer): this thread steps aside."""
    _thread.background = True


class Foreground:
    """How many Slack requests are being answered now; background threads wait for none."""

    def __init__(self, longest_pause: float = LONGEST_PAUSE) -> None:
        self._answering = 0
        self._longest_pause = longest_pause
        self._quiet = threading.Condition()

    @contextmanager
    def answering(self) -> Iterator[None]:
        with self._quiet:
            self._answering += 1
        try:
            yield
        finally:
            with self._quiet:
                self._answering -= 1
                if self._answering == 0:
                    self._quiet.notify_all()

    def step_aside(self) -> None:
        """In a background thread: wait (briefly) until no Slack request is being answered."""
        if self._answering == 0 or not getattr(_thread, "background", False):
            return  # the common case costs one read, no lock
        with self._quiet:
            self._quiet.wait_for(lambda: self._answering == 0, self._longest_pause)


#: The process's one: the server marks requests, the I/O points of background work consult it.
FOREGROUND = Foreground()
