"""Deadlines: callbacks run at a time, all on one thread.

A `threading.Timer` is a new thread per timer; at one held announcement per approval that is a
thread started (and mostly cancelled) per click. Here one daemon thread serves every deadline.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)


class Deadline:
    """A callback due at `due` (time.monotonic()); `cancel` keeps it from running."""

    __slots__ = ("callback", "cancelled", "due")

    def __init__(self, due: float, callback: Callable[[], object]) -> None:
        self.due = due
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        """Also lets go of the callback, which stays in the heap until its time otherwise: a lease's
        heartbeat holds the lease, whose own reference back made a cycle for the collector."""
        self.cancelled = True
        self.callback = _cancelled


def _cancelled() -> None:
    """What a cancelled deadline holds instead of its callback."""


class Deadlines:
    """Runs each callback once its deadline comes, in order, on one thread started on first use.

    Callbacks must be quick (hand slow work to a pool): the next deadline waits for them.
    """

    def __init__(self, name: str = "deadlines") -> None:
        self._name = name
        self._heap: list[tuple[float, int, Deadline]] = []
        self._order = itertools.count()
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None

    def after(self, seconds: float, callback: Callable[[], object]) -> Deadline:
        deadline = Deadline(time.monotonic() + seconds, callback)
        with self._changed:
            # Only a new first deadline changes how long the thread sleeps: a later one need not wake it.
            first = not self._heap or deadline.due < self._heap[0][0]
            heapq.heappush(self._heap, (deadline.due, next(self._order), deadline))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()
            elif first:
                self._changed.notify()
        return deadline

    def _run(self) -> None:
        while True:
            with self._changed:
                while not self._heap or self._heap[0][0] > time.monotonic():
                    self._changed.wait(self._heap[0][0] - time.monotonic() if self._heap else None)
                _, _, deadline = heapq.heappop(self._heap)
            if deadline.cancelled:
                continue
            try:
                deadline.callback()
            except Exception:  # one failing callback must not stop the others
                log.exception("a deadline's callback failed")
