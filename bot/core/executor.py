"""The worker pool that runs everything after Slack's ack, able to say when it is idle."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")


class TrackedExecutor(ThreadPoolExecutor):
    """A ThreadPoolExecutor that counts unfinished work, for graceful shutdown and tests."""

    def __init__(self, max_workers: int = 16) -> None:
        super().__init__(max_workers=max_workers, thread_name_prefix="cf-access-worker")
        self._unfinished = 0
        self._idle = threading.Condition()

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        with self._idle:
            self._unfinished += 1

        def run() -> T:
            try:
                return fn(*args, **kwargs)
            finally:
                with self._idle:
                    self._unfinished -= 1
                    self._idle.notify_all()

        return super().submit(run)

    def wait_idle(self, timeout: float = 10.0) -> bool:
        with self._idle:
            return self._idle.wait_for(lambda: self._unfinished == 0, timeout)

    @property
    def unfinished(self) -> int:
        with self._idle:
            return self._unfinished
