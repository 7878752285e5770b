"""A small thread-safe cache whose entries expire, with one loader call per key at a time.

With `background` set, an expired entry is still served while one reload runs in the background
(stale-while-revalidate): a caller on a path that must answer Slack within 3 s never waits on the
loader once the key has been loaded once.

With `failures` set, a load that raised one of those errors is not tried again for
`failure_ttl`: callers get the same error at once. During an outage each caller would otherwise
wait through the loader's own retries (a burst of clicks, every reminder) only to learn the same.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Hashable
from datetime import datetime, timedelta
from typing import Generic, TypeVar

from bot.core.clock import Clock

log = logging.getLogger(__name__)
K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
Background = Callable[[Callable[[], None]], object]


class TtlCache(Generic[K, V]):
    def __init__(
        self,
        clock: Clock,
        ttl: timedelta,
        *,
        background: Background | None = None,
        failures: tuple[type[Exception], ...] = (),
        failure_ttl: timedelta = timedelta(0),
        ttl_of: Callable[[V], timedelta] | None = None,
    ) -> None:
        self._clock = clock
        self._ttl = ttl
        self._background = background
        self._remembered_failures = failures
        self._failure_ttl = failure_ttl
        self._ttl_of = ttl_of
        self._failures: dict[K, tuple[datetime, Exception]] = {}
        self._entries: dict[K, tuple[datetime, V]] = {}
        self._lock = threading.Lock()
        self._key_locks: dict[K, threading.Lock] = {}
        self._loads: dict[K, int] = {}
        self._refreshing: set[K] = set()

    def has(self, key: K) -> bool:
        """Whether `key` was ever loaded (fresh or not)."""
        with self._lock:
            return key in self._entries

    def _fresh_entry(self, key: K) -> tuple[datetime, V] | None:
        with self._lock:
            entry = self._entries.get(key)
        return entry if entry is not None and entry[0] > self._clock.now() else None

    def is_fresh(self, key: K) -> bool:
        """Whether a fresh value is cached (None included, which `peek` cannot tell from absent)."""
        return self._fresh_entry(key) is not None

    def peek(self, key: K) -> V | None:
        """The cached value if still fresh, without loading."""
        entry = self._fresh_entry(key)
        return entry[1] if entry is not None else None

    def last(self, key: K) -> V | None:
        """The value last loaded for `key`, fresh or expired (None if never loaded or invalidated):
        for a caller that would rather use an old answer than none when a load fails."""
        with self._lock:
            entry = self._entries.get(key)
        return entry[1] if entry else None

    def get(self, key: K, load: Callable[[], V], *, fresh: bool = False) -> V:
        """Load at most once per key concurrently: a burst of callers waits for one load."""
        if not fresh:
            value = self.peek(key)
            if value is not None:
                return value
            if self._background is not None:
                with self._lock:
                    entry = self._entries.get(key)
                if entry is not None:
                    self._refresh_later(key, load)
                    return entry[1]
        with self._lock:
            key_lock = self._key_locks.setdefault(key, threading.Lock())
            loads_when_asked = self._loads.get(key, 0)
        with key_lock:
            with self._lock:
                entry = self._entries.get(key)
                loaded_meanwhile = self._loads.get(key, 0) > loads_when_asked
            # Another caller loaded while we waited for the lock: that answer is as fresh as ours would be.
            if entry and entry[0] > self._clock.now() and (loaded_meanwhile or not fresh):
                return entry[1]
            self._raise_remembered_failure(key)
            try:
                value = load()
            except self._remembered_failures as error:
                with self._lock:
                    self._failures[key] = (self._clock.now() + self._failure_ttl, error)
                raise
            with self._lock:
                self._loads[key] = self._loads.get(key, 0) + 1
            self.put(key, value)
            return value

    def _raise_remembered_failure(self, key: K) -> None:
        with self._lock:
            failure = self._failures.get(key)
            if failure is not None and failure[0] <= self._clock.now():
                del self._failures[key]
                failure = None
        if failure is not None:
            raise failure[1].with_traceback(None)  # not the traceback of every earlier raise

    def _refresh_later(self, key: K, load: Callable[[], V]) -> None:
        with self._lock:
            if key in self._refreshing:
                return
            self._refreshing.add(key)

        def refresh() -> None:
            try:
                self.get(key, load, fresh=True)
            except Exception as error:  # the stale value stays; the next caller tries again
                log.warning("background refresh of %r failed: %s", key, error)
            finally:
                with self._lock:
                    self._refreshing.discard(key)

        assert self._background is not None
        try:
            self._background(refresh)
        except RuntimeError:  # the pool is shutting down
            with self._lock:
                self._refreshing.discard(key)

    def put(self, key: K, value: V) -> None:
        """`ttl_of(value)` decides how long it stays fresh, if given (a partial answer: shorter)."""
        ttl = self._ttl_of(value) if self._ttl_of is not None else self._ttl
        with self._lock:
            self._entries[key] = (self._clock.now() + ttl, value)
            self._failures.pop(key, None)

    def invalidate(self, key: K) -> None:
        with self._lock:
            self._entries.pop(key, None)
