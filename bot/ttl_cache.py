"""A small thread-safe cache whose entries expire, with one loader call per key at a time."""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from datetime import datetime, timedelta
from typing import Generic, TypeVar

from bot.clock import Clock

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class TtlCache(Generic[K, V]):
    def __init__(self, clock: Clock, ttl: timedelta) -> None:
        self._clock = clock
        self._ttl = ttl
        self._entries: dict[K, tuple[datetime, V]] = {}
        self._lock = threading.Lock()
        self._key_locks: dict[K, threading.Lock] = {}

    def peek(self, key: K) -> V | None:
        """The cached value if still fresh, without loading."""
        with self._lock:
            entry = self._entries.get(key)
        if entry and entry[0] > self._clock.now():
            return entry[1]
        return None

    def get(self, key: K, load: Callable[[], V], *, fresh: bool = False) -> V:
        """Load at most once per key concurrently: a burst of callers waits for one load."""
        if not fresh:
            value = self.peek(key)
            if value is not None:
                return value
        with self._lock:
            key_lock = self._key_locks.setdefault(key, threading.Lock())
        started = self._clock.now()
        with key_lock:
            with self._lock:
                entry = self._entries.get(key)
            # Someone else loaded while we waited: a load that began after we asked is fresh enough.
            if entry and entry[0] - self._ttl >= started and entry[0] > self._clock.now():
                return entry[1]
            if not fresh and entry and entry[0] > self._clock.now():
                return entry[1]
            value = load()
            self.put(key, value)
            return value

    def put(self, key: K, value: V) -> None:
        with self._lock:
            self._entries[key] = (self._clock.now() + self._ttl, value)

    def invalidate(self, key: K) -> None:
        with self._lock:
            self._entries.pop(key, None)
