"""One pause shared by every Cloudflare call of the process.

Cloudflare's rate limit belongs to the token's user, not to a call: after a 429 every call is
refused until the window reopens, so one 429 pauses them all, for `Retry-After` seconds. A call
made during the pause is refused here, at once, without reaching Cloudflare (`CloudflarePaused`,
carrying the seconds left). Nothing ever sleeps on the pause: a pool that answers Slack is never
held by it, and work that can wait (the invite outbox) reschedules itself to `resumes_at()`.
"""

from __future__ import annotations

import math
import threading
from datetime import datetime, timedelta

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
