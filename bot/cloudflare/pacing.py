"""One pause shared by every Cloudflare call of the process.

Cloudflare's rate limit belongs to the token's user, not to a call: after a 429 every call is
refused until the window reopens, so one 429 pauses them all, for `Retry-After` seconds. A call
made during the pause is refused here, at once, without reaching Cloudflare (`CloudflarePaused`,
carrying the seconds left). Nothing ever sleeps on the pause: a pool that answers Slack is never
held by it, and work that can wait (the invite outbox) reschedules itself to `resumes_at()`.

The pause is the fallback. `CloudflareBudget` keeps the process under CLOUDFLARE_RATE_LIMIT in
the first place, so that a 429 only comes when someone else spends the same token's allowance.
"""

from __future__ import annotations

import heapq
import math
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

from bot.cloudflare.errors import CloudflareRateLimited
from bot.core.clock import Clock

#: A 429 without `Retry-After`: Cloudflare documents a five-minute block; a minute is a first guess.
DEFAULT_PAUSE = 60.0
#: Never pause longer than Cloudflare's whole window, whatever a header says.
LONGEST_PAUSE = 300.0


class CloudflarePaused(CloudflareRateLimited):
    """Refused by the process-wide pause: nothing was sent to Cloudflare."""


class CloudflarePause:
    """The process's "paused until T", decided on the injected clock (tests move it)."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._until: datetime | None = None
        self._lock = threading.Lock()

    def pause(self, retry_after: float | None) -> datetime:
        """After a 429: pause every call for `retry_after` seconds; a pause is only ever extended."""
        seconds = DEFAULT_PAUSE if retry_after is None else min(max(retry_after, 0.0), LONGEST_PAUSE)
        until = self._clock.now() + timedelta(seconds=seconds)
        with self._lock:
            if self._until is None or until > self._until:
                self._until = until
            return self._until

    def resumes_at(self) -> datetime | None:
        """When calls may go out again; None when they may now."""
        with self._lock:
            until = self._until
        return until if until is not None and until > self._clock.now() else None

    def remaining(self) -> float:
        until = self.resumes_at()
        return 0.0 if until is None else (until - self._clock.now()).total_seconds()

    def check(self) -> None:
        """Raise CloudflarePaused, without calling Cloudflare, while the pause lasts."""
        remaining = self.remaining()
        if remaining > 0:
            raise CloudflarePaused(
                f"Cloudflare's rate limit was reached; the bot calls Cloudflare again in {math.ceil(remaining)} s",
                retry_after=remaining,
            )


#: A call waits at most this long for the budget; past it, it is refused at once (`CloudflareBudgetSpent`).
MAX_BUDGET_WAIT = 10.0
_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


class CloudflareBudgetSpent(CloudflarePaused):
    """Refused by the bot's own budget (CLOUDFLARE_RATE_LIMIT) before anything was sent."""


class CloudflareBudget:
    """CLOUDFLARE_RATE_LIMIT: at most `calls` Cloudflare calls in any rolling `window`, shared by
    every call of the process, so the bot paces itself instead of meeting Cloudflare's 429 (after
    which Cloudflare refuses every call for the rest of its window).

    Two rules, both decided on the injected clock:
    - a window guard, exact: `calls` tokens, each coming back `window` after the call that spent it
      has *finished* (a call reaches Cloudflare before its answer comes back, so Cloudflare never
      counts more than `calls` in a window however long calls take);
    - a token bucket that spreads calls out: `burst` at once, then one per `window / calls`, so a
      burst of work shares the budget with clicks instead of spending it all and leaving everyone
      to wait out the window.

    A call whose turn comes within `max_wait` waits for it (in arrival order, on the injected
    sleep): under a burst, calls queue for a second or two rather than fail. A call whose turn is
    further off is refused at once with `CloudflareBudgetSpent` (a `CloudflarePaused`: nothing was
    sent, `retry_after` says when), so a Slack-facing worker is never held longer than `max_wait`;
    invites reschedule themselves on it, clicks are told to try again.
    """

    def __init__(
        self,
        calls: int,
        window: float,
        *,
        clock: Clock,
        sleep: Callable[[float], None] = time.sleep,
        max_wait: float = MAX_BUDGET_WAIT,
        burst: int | None = None,
        on_wait: Callable[[float], None] | None = None,
        on_refused: Callable[[float], None] | None = None,
    ) -> None:
        if calls < 1 or window <= 0:
            raise ValueError("a Cloudflare budget needs at least one call per positive window")
        self.calls = calls
        self.window = window
        self._clock = clock
        self._sleep = sleep
        self._max_wait = max_wait
        self._interval = window / calls
        # A quarter of the budget at once: a burst may use it, and the rest is spread out.
        self._tolerance = (max(1, burst if burst is not None else calls // 4) - 1) * self._interval
        self._arrival = -math.inf  # the bucket's "theoretical arrival time" (GCRA)
        self._tokens: list[float] = [-math.inf] * calls  # when each free token may be spent (a heap)
        self._changed = threading.Condition()
        self._on_wait = on_wait
        self._on_refused = on_refused

    def _seconds(self) -> float:
        return (self._clock.now() - _EPOCH).total_seconds()

    @contextmanager
    def spend(self) -> Iterator[None]:
        """Hold one token for the length of a call; it comes back `window` after the call ends."""
        self.acquire()
        try:
            yield
        finally:
            self.release()

    def acquire(self) -> None:
        """Take a token, waiting up to `max_wait` for its turn; else raise CloudflareBudgetSpent."""
        with self._changed:
            # Every token is on a call still under way (only with a tiny budget): wait for one.
            if not self._tokens and not self._changed.wait_for(lambda: bool(self._tokens), self._max_wait):
                raise self._spent(self.window)
            now = self._seconds()
            token = heapq.heappop(self._tokens)
            turn = max(now, token, self._arrival - self._tolerance)
            wait = turn - now
            if wait > self._max_wait:
                heapq.heappush(self._tokens, token)
                raise self._spent(wait)
            self._arrival = max(self._arrival, turn) + self._interval
        if wait > 0:
            if self._on_wait is not None:
                self._on_wait(wait)
            self._sleep(wait)

    def release(self) -> None:
        """The call that held a token has ended: the token may be spent again `window` from now."""
        with self._changed:
            heapq.heappush(self._tokens, self._seconds() + self.window)
            self._changed.notify()

    def _spent(self, retry_after: float) -> CloudflareBudgetSpent:
        if self._on_refused is not None:
            self._on_refused(retry_after)
        return CloudflareBudgetSpent(
            f"the bot's Cloudflare budget ({self.calls} calls per {self.window:g} s, CLOUDFLARE_RATE_LIMIT) "
            f"is spent; the bot calls Cloudflare again in {math.ceil(retry_after)} s",
            retry_after=retry_after,
        )
