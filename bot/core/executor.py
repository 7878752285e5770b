"""The worker pool that runs everything after Slack's ack, able to say when it is idle."""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import ParamSpec, TypeVar

from bot.core.priority import mark_background

P = ParamSpec("P")
T = TypeVar("T")

log = logging.getLogger(__name__)


def _name_of(fn: Callable[..., object]) -> str:
    return getattr(fn, "__qualname__", None) or type(fn).__name__


class TrackedExecutor(ThreadPoolExecutor):
    """A ThreadPoolExecutor that counts unfinished work, for graceful shutdown and tests.

    Nobody waits on these futures, so an exception left in one would vanish: every submitted
    callable is wrapped to log what escapes it, with a short reference (as `failure_text` gives
    people) to find it by. The exception still goes to the future for any caller that does wait.
    """

    def __init__(self, max_workers: int = 16, *, background: bool = False) -> None:
        """`background`: the work after acks, which steps aside while Slack requests are answered."""
        super().__init__(
            max_workers=max_workers,
            thread_name_prefix="cf-access-worker",
            initializer=mark_background if background else None,
        )
        self._unfinished = 0
        #: Everything ever submitted: a count that moves shows work was handed over meanwhile.
        self._submitted = 0
        self._idle = threading.Condition()

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        with self._idle:
            self._unfinished += 1
            self._submitted += 1

        def run() -> T:
            try:
                return fn(*args, **kwargs)
            except Exception:
                log.exception("background work %s failed (ref %s)", _name_of(fn), secrets.token_hex(4))
                raise
            finally:
                with self._idle:
                    self._unfinished -= 1
                    self._idle.notify_all()

        try:
            return super().submit(run)
        except BaseException:  # shut down: nothing will run, so nothing is unfinished
            with self._idle:
                self._unfinished -= 1
                self._idle.notify_all()
            raise

    def wait_idle(self, timeout: float = 10.0) -> bool:
        with self._idle:
            return self._idle.wait_for(lambda: self._unfinished == 0, timeout)

    @property
    def unfinished(self) -> int:
        with self._idle:
            return self._unfinished

    @property
    def submitted(self) -> int:
        with self._idle:
            return self._submitted
