"""Socket Mode: the bot keeps an outbound WebSocket to Slack instead of serving a public URL.

Why not slack_sdk's clients: the built-in one reads a replacement connection only after the old
socket's 3 s receive timeout (envelopes wait unacknowledged), spins a core on a half-closed socket
and takes four ping intervals to notice a dead peer; the `websockets` one needs an AsyncApp and
sleeps a full ping interval between failed reads. This runner, on `websockets` (asyncio):

- opens the replacement at once when Slack sends `disconnect` (`warning`, `refresh_requested`,
  `link_disabled`...), keeps reading the old link until its envelopes are acknowledged, then closes it;
- notices a closed TCP connection at once, and a silent one by its unanswered ping within
  `ping_interval + ping_timeout + close_timeout` (9 s by default); then reconnects at once, backing
  off only while reconnecting fails; nothing polls while idle;
- on SIGTERM/SIGINT lets the envelopes in flight finish and be acknowledged, then closes the links.

Envelopes are dispatched to the same Bolt `App` as HTTP mode, on a thread pool, and acknowledged
with the listener's ack body as `payload`, like slack_bolt's own Socket Mode adapter.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import random
import signal
import time
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from slack_bolt import App
from slack_bolt.adapter.socket_mode.internals import run_bolt_app
from slack_sdk.errors import SlackApiError
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.web import WebClient
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from bot.core.priority import FOREGROUND

log = logging.getLogger(__name__)

# A link that dies sooner than this counts as a failed attempt, so a flapping peer gets backoff, not a loop.
_HEALTHY_AFTER = 10.0

# apps.connections.open errors that retrying cannot fix, with what to do about them.
_REFUSALS = {
    "not_authed": "it is empty",
    "invalid_auth": "Slack does not know it; copy the app-level token (xapp-...) from the app's Basic Information page",
    "not_allowed_token_type": "it must be an app-level token (xapp-...), not the bot token (xoxb-...)",
    "missing_scope": "the app-level token needs the connections:write scope",
    "token_revoked": "it has been revoked; generate a new app-level token",
    "token_expired": "it has expired; generate a new app-level token",
    "account_inactive": "the workspace or app is no longer active",
    "no_permission": "the token may not open Socket Mode connections",
}


class SocketModeRefused(Exception):
    """Slack refused the app-level token: no retry can help, so the process exits."""

    def __init__(self, error: str) -> None:
        self.error = error
        super().__init__(f"SLACK_APP_TOKEN was refused by Slack ({error}): {_REFUSALS.get(error, 'check the token')}")


class _RateLimited(Exception):
    def __init__(self, retry_after: float) -> None:
        super().__init__(f"apps.connections.open rate limited for {retry_after:g} s")
        self.retry_after = retry_after


class _Link:
    """One WebSocket connection to Slack and the envelopes received on it that are not yet acknowledged."""

    def __init__(self, ws: ClientConnection, number: int) -> None:
        self.ws = ws
        self.number = number
        self.ready = asyncio.Event()  # Slack's `hello` arrived
        self.retiring = asyncio.Event()  # Slack sent `disconnect`: replace this link
        self.closed = asyncio.Event()
        self.in_flight = 0
        self.opened_at = asyncio.get_running_loop().time()


class SocketModeRunner:
    """Serves a Bolt `App` over Socket Mode until SIGTERM/SIGINT or `stop()`."""

    def __init__(
        self,
        app: App,
        app_token: str,
        *,
        client: WebClient | None = None,
        ping_interval: float = 5.0,
        ping_timeout: float = 3.0,
        close_timeout: float = 1.0,
        open_timeout: float = 10.0,
        drain_timeout: float = 10.0,
        retry_delays: tuple[float, ...] = (1.0, 2.0, 5.0, 10.0, 30.0),
        workers: int = 10,
        on_ack: Callable[[dict[str, Any], float], None] | None = None,
    ) -> None:
        """`on_ack(payload, seconds)`: after each envelope is acknowledged (the ack latency metric)."""
        self._app = app
        self._app_token = app_token
        self._client: WebClient = client or app.client
        self._ping_interval = ping_interval
        self._ping_timeout = ping_timeout
        self._close_timeout = close_timeout
        self._open_timeout = open_timeout
        self._drain_timeout = drain_timeout
        self._retry_delays = retry_delays
        self._workers = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="socket-mode")
        self._numbers = itertools.count(1)
        self._links: list[_Link] = []
        self._current: _Link | None = None
        self._in_flight = 0  # envelopes received and not yet acknowledged, on any link
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_requested = False
        self._on_ack = on_ack

    # --- public ------------------------------------------------------------------------------

    def run(self, on_connected: Callable[[], None] | None = None) -> None:
        """Blocks until stopped; `on_connected` runs once, after the first connection is ready.

        Raises SocketModeRefused when Slack refuses the app-level token.
        """
        asyncio.run(self._run(on_connected))

    def link_state(self) -> str:
        """`connected` while a link Slack has greeted is open, else `connecting` (any thread)."""
        link = self._current
        ready = link is not None and link.ready.is_set() and not link.closed.is_set()
        return "connected" if ready else "connecting"

    def stop(self) -> None:
        """Graceful stop, callable from any thread (signals are handled by `run` itself)."""
        self._stop_requested = True
        loop = self._loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop has already finished
                loop.call_soon_threadsafe(self._request_stop)

    # --- supervision -------------------------------------------------------------------------

    async def _run(self, on_connected: Callable[[], None] | None) -> None:
        loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        self._forced = asyncio.Event()
        self._idle = asyncio.Condition()
        self._loop = loop
        if self._stop_requested:
            self._stopping.set()
        signals = self._install_signal_handlers(loop)
        try:
            await self._supervise(on_connected)
        finally:
            await self._shutdown()
            for signum in signals:
                loop.remove_signal_handler(signum)

    def _install_signal_handlers(self, loop: asyncio.AbstractEventLoop) -> list[int]:
        installed: list[int] = []
        for signum in (signal.SIGTERM, signal.SIGINT):
            try:
                loop.add_signal_handler(signum, self._on_signal, signum)
            except (
                ValueError,
                RuntimeError,
                NotImplementedError,
            ):  # off the main thread, or a loop without signals: stop() only
                continue
            installed.append(signum)
        return installed

    def _on_signal(self, signum: int) -> None:
        if self._stopping.is_set():
            log.warning("%s again: closing Socket Mode without waiting for work in flight", signal.Signals(signum).name)
            self._forced.set()
            return
        log.info(
            "%s received: finishing the envelopes in flight, then closing Socket Mode", signal.Signals(signum).name
        )
        self._stopping.set()

    def _request_stop(self) -> None:
        self._stopping.set()

    async def _supervise(self, on_connected: Callable[[], None] | None) -> None:
        loop = asyncio.get_running_loop()
        failures = 0  # consecutive failed attempts and links that died young; the first retry is immediate
        retry_after = 0.0
        while not self._stopping.is_set():
            current = self._current
            if current is not None and not current.closed.is_set() and not current.retiring.is_set():
                await _first(self._stopping.wait(), current.closed.wait(), current.retiring.wait())
                continue
            if current is not None and current.closed.is_set() and not current.retiring.is_set():  # lost
                failures = failures + 1 if loop.time() - current.opened_at < _HEALTHY_AFTER else 0
                self._current = current = None
            delay = max(retry_after, self._backoff(failures))
            if delay:
                log.info("Socket Mode: reconnecting in %.1f s", delay)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), delay)
                if self._stopping.is_set():
                    return
            try:
                link = await self._unless_stopping(self._open())
            except SocketModeRefused:
                raise
            except Exception as error:
                failures += 1
                retry_after = error.retry_after if isinstance(error, _RateLimited) else 0.0
                log.warning("Socket Mode: could not connect (%s)", _describe(error))
                continue
            if link is None:  # stopping
                return
            retry_after = 0.0
            self._current = link
            if current is not None and not current.closed.is_set():
                self._spawn(self._retire(current))
            if on_connected is not None:
                on_connected()
                on_connected = None

    def _backoff(self, failures: int) -> float:
        if failures <= 1:
            return 0.0
        return self._retry_delays[min(failures - 2, len(self._retry_delays) - 1)] * random.uniform(0.8, 1.2)

    async def _unless_stopping(self, opening: Coroutine[Any, Any, _Link]) -> _Link | None:
        task = asyncio.ensure_future(opening)
        stopping = asyncio.ensure_future(self._stopping.wait())
        await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if task.done():
            return task.result()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
        return None

    async def _open(self) -> _Link:
        url = await asyncio.to_thread(self._issue_url)
        ws = await connect(
            url,
            ping_interval=self._ping_interval,
            ping_timeout=self._ping_timeout,
            open_timeout=self._open_timeout,
            close_timeout=self._close_timeout,
        )
        link = _Link(ws, next(self._numbers))
        self._links.append(link)
        self._spawn(self._read(link))
        try:
            async with asyncio.timeout(self._open_timeout):
                await _first(link.ready.wait(), link.closed.wait())
            if not link.ready.is_set():
                raise ConnectionError(f"closed before hello (code {ws.close_code})")
        except BaseException:
            await ws.close()
            raise
        return link

    def _issue_url(self) -> str:
        try:
            response = self._client.apps_connections_open(app_token=self._app_token)
        except SlackApiError as error:
            code = str(error.response.get("error", ""))
            if code in _REFUSALS:
                raise SocketModeRefused(code) from None
            if code == "ratelimited":
                raise _RateLimited(float(error.response.headers.get("Retry-After", 30))) from None
            raise
        return str(response["url"])

    async def _retire(self, link: _Link) -> None:
        """Close a replaced link once its envelopes are acknowledged (Slack closes it ~10 s later anyway)."""
        await self._wait_acknowledged(lambda: link.in_flight == 0, self._drain_timeout)
        await link.ws.close()

    # --- envelopes ---------------------------------------------------------------------------

    async def _read(self, link: _Link) -> None:
        ws = link.ws
        try:
            async for raw in ws:
                self._receive(link, raw)
        except ConnectionClosed:
            pass
        finally:
            link.closed.set()
            with contextlib.suppress(ValueError):
                self._links.remove(link)
            expected = self._stopping.is_set() or link.retiring.is_set() or not link.ready.is_set()
            (log.info if expected else log.warning)(
                "Socket Mode connection %d closed (code %s%s)%s",
                link.number,
                ws.close_code,
                f", {ws.close_reason}" if ws.close_reason else "",
                "" if expected else "; reconnecting",
            )

    def _receive(self, link: _Link, raw: str | bytes) -> None:
        try:
            message = json.loads(raw)
        except ValueError:
            message = None
        if not isinstance(message, dict):
            log.warning("Socket Mode: ignored a frame that is not a JSON object")
            return
        kind = message.get("type")
        if kind == "hello":
            log.info(
                "Socket Mode connection %d ready (%s open for this app)", link.number, message.get("num_connections")
            )
            link.ready.set()
        elif kind == "disconnect":
            log.info("Socket Mode: Slack asks to reconnect (%s); opening a new connection", message.get("reason"))
            link.retiring.set()
        elif message.get("envelope_id"):
            link.in_flight += 1
            self._in_flight += 1
            self._spawn(self._handle(link, message))
        else:
            log.debug("Socket Mode: ignored a %s message", kind)

    async def _handle(self, link: _Link, message: dict[str, Any]) -> None:
        started = time.perf_counter()
        try:
            with FOREGROUND.answering():  # the work pools step aside until this envelope is acked
                ack = await asyncio.get_running_loop().run_in_executor(self._workers, self._dispatch, message)
                if ack is not None and await self._send(link, json.dumps(ack)) and self._on_ack is not None:
                    self._on_ack(message.get("payload") or {}, time.perf_counter() - started)
        except Exception:
            log.exception("Socket Mode: envelope %s failed", message.get("envelope_id"))
        finally:
            link.in_flight -= 1
            self._in_flight -= 1
            async with self._idle:
                self._idle.notify_all()

    def _dispatch(self, message: dict[str, Any]) -> dict[str, Any] | None:
        """Runs the listeners; returns the ack, or None where Bolt would not acknowledge (as in HTTP mode)."""
        request = SocketModeRequest.from_dict(message)
        if request is None:
            return None
        response = run_bolt_app(self._app, request)
        if response.status != 200:
            log.info("Socket Mode: envelope %s not acknowledged (status %s)", request.envelope_id, response.status)
            return None
        ack: dict[str, Any] = {"envelope_id": request.envelope_id}
        if response.body:
            content_type = response.headers.get("content-type", [""])[0]
            ack["payload"] = (
                json.loads(response.body) if content_type.startswith("application/json") else {"text": response.body}
            )
        return ack

    async def _send(self, link: _Link, ack: str) -> bool:
        """Acks go back on the envelope's link, or on the current one if that link has gone; False
        when neither could take it."""
        for candidate in (link, self._current):
            if candidate is None or candidate.closed.is_set():
                continue
            with contextlib.suppress(ConnectionClosed):
                await candidate.ws.send(ack)
                return True
        log.warning("Socket Mode: no open connection to acknowledge an envelope; Slack will retry or report it")
        return False

    # --- shutdown ----------------------------------------------------------------------------

    async def _shutdown(self) -> None:
        await self._wait_acknowledged(lambda: self._in_flight == 0, self._drain_timeout)
        links = list(self._links)
        await asyncio.gather(*(link.ws.close() for link in links), return_exceptions=True)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._workers.shutdown(wait=False, cancel_futures=True)
        if links:
            log.info("Socket Mode connection closed")

    async def _wait_acknowledged(self, done: Callable[[], bool], timeout: float) -> None:
        async def idle() -> None:
            async with self._idle:
                await self._idle.wait_for(done)

        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await _first(idle(), self._forced.wait())

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


async def _first(*waits: Coroutine[Any, Any, Any]) -> None:
    """Returns when the first of `waits` completes; cancels the others."""
    tasks = [asyncio.ensure_future(wait) for wait in waits]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()


def _describe(error: BaseException) -> str:
    if isinstance(error, SlackApiError):
        return f"apps.connections.open: {error.response.get('error')}"
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
