"""A small thread-safe cache whose entries expire, with one loader call per key at a time."""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from datetime import datetime, timedelta
from typing import Generic, TypeVar

from bot.core.clock import Clock

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class TtlCache(Generic[K, V]):
    def __init__(self, clock: Clock, ttl: timedelta) -> None:
        self._clock = clock
        self._ttl = ttl
        self._entries: dict[K, tuple[datetime, V]] = {}
        self._lock = threading.Lock()
        self._key_locks: dict[K, threading.Lock] = {}
        self._loads: dict[K, int] = {}

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
            loads_when_asked = self._loads.get(key, 0)
        with key_lock:
            with self._lock:
                entry = self._entries.get(key)
                loaded_meanwhile = self._loads.get(key, 0) > loads_when_asked
            # Another caller loaded while we waited for the lock: that answer is as fresh as ours would be.
            if entry and entry[0] > self._clock.now() and (loaded_meanwhile or not fresh):
                return entry[1]
            value = load()
            with self._lock:
                self._loads[key] = self._loads.get(key, 0) + 1
            self.put(key, value)
            return value

    def put(self, key: K, value: V) -> None:
        with self._lock:
            self._entries[key] = (self._clock.now() + self._ttl, value)

    def invalidate(self, key: K) -> None:
        with self._lock:
            self._entries.pop(key, None)
