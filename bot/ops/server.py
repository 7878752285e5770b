"""HTTP mode: one port serving `POST /slack/events`, `GET /healthz` and `GET /metrics` (Starlette on uvicorn).

Bolt's own `app.start()` is a single-threaded development server. Here each Slack request is
dispatched on Starlette's thread pool; listeners ack first and finish on the tracked worker pool.

Before Bolt sees a request, this module bounds its size and checks Slack's signature over the
byte-exact body, so nothing from an unsigned sender is ever parsed. Bolt's own signature check
stays on behind it: it costs one HMAC and keeps the Bolt app safe on any other entry point.
Socket Mode does not come through here (its envelopes arrive over Slack's authenticated socket);
it serves only `/healthz` and `/metrics` on the same HOST/PORT (`OpsListener`), for probes and scrapes.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import secrets
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

from slack_bolt import App
from slack_bolt.response import BoltResponse
from slack_sdk.signature import SignatureVerifier
from sqlalchemy import text
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bot.access.services import Services
from bot.core.config import ConfigError
from bot.core.priority import FOREGROUND
from bot.ops.metrics import CONTENT_TYPE_LATEST, Metrics, kind_of
from bot.slack.bolt_request import SlackRequest

log = logging.getLogger(__name__)

# Slack's payloads are a few kB (a view submission with large inputs stays well under 100 kB).
MAX_BODY_BYTES = 1024 * 1024


class RawBodySignatureVerifier(SignatureVerifier):
    """slack_sdk's verifier (5-minute window both ways, `hmac.compare_digest`) over raw bytes.

    The SDK decodes a bytes body as UTF-8 before signing, which raises on bytes that are not
    UTF-8; Slack signs the bytes as sent, so sign them as they are and let any body be checked.
    """

    def generate_signature(self, *, timestamp: str, body: str | bytes) -> str | None:
        raw = body.encode() if isinstance(body, str) else body
        base = b"v0:" + timestamp.encode() + b":" + raw
        return "v0=" + hmac.new(self.signing_secret.encode(), base, hashlib.sha256).hexdigest()

    def is_signed(self, body: bytes, headers: Mapping[str, str]) -> bool:
        """True only for a current, correct signature; malformed headers are simply not signed."""
        timestamp = headers.get("x-slack-request-timestamp", "")
        signature = headers.get("x-slack-signature", "")
        # The SDK calls int() on the timestamp, which raises on "abc" and accepts "1_7" or " 17".
        if not (timestamp.isascii() and timestamp.isdigit() and signature.isascii()):
            return False
        return self.is_valid(body=body, timestamp=timestamp, signature=signature)


class _TooLarge(Exception):
    pass


async def read_limited(request: Request, limit: int = MAX_BODY_BYTES) -> bytes:
    """The body, or `_TooLarge` as soon as it is known to exceed `limit`.

    A declared Content-Length is checked before a byte is read; a chunked body is read as a
    stream and abandoned once past the limit, so a huge upload never sits in memory.
    """
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _TooLarge
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise _TooLarge
    return bytes(body)


def _error(status: int, error: str, **fields: str) -> Response:
    # Connection: close on a refusal whose body was not read: the rest of it is never wanted.
    headers = {"Connection": "close"} if status == 413 else None
    return JSONResponse({"error": error, **fields}, status_code=status, headers=headers)


def create_web_app(
    bolt_app: App,
    services: Services,
    *,
    on_startup: Any = None,
    on_shutdown: Any = None,
    metrics: Metrics | None = None,
) -> Starlette:
    secret = services.settings.slack_signing_secret
    verifier = RawBodySignatureVerifier(secret.get_secret_value()) if secret else None

    def dispatch(raw: bytes, query: str, headers: dict[str, str]) -> BoltResponse | None:
        """Parse (only signed bytes get here) and run Bolt; None when the body cannot be read."""
        started = time.perf_counter()
        try:
            bolt_request = SlackRequest(body=raw.decode("utf-8"), query=query, headers=headers)
        except Exception as error:  # any parse failure is the body's fault: not UTF-8, not JSON, odd shape
            log.warning("refused a malformed Slack request (%s)", type(error).__name__)
            return None
        response = bolt_app.dispatch(bolt_request)
        if metrics is not None:
            metrics.observe_ack(kind_of(bolt_request.body), time.perf_counter() - started)
        return response

    async def slack_events(request: Request) -> Response:
        try:
            raw = await read_limited(request)
        except _TooLarge:
            log.warning("refused a Slack request over %d bytes", MAX_BODY_BYTES)
            return _error(413, "request too large")
        if verifier is None or not verifier.is_signed(raw, request.headers):
            log.warning("refused a request without a valid Slack signature")
            return _error(401, "invalid request")
        try:
            with FOREGROUND.answering():  # the work pools step aside until this is answered
                bolt_response = await run_in_threadpool(dispatch, raw, request.url.query, dict(request.headers))
        except Exception:
            reference = secrets.token_hex(4)
            log.exception("Slack request failed (ref %s)", reference)
            return _error(500, "internal error", ref=reference)
        if bolt_response is None:
            return _error(400, "malformed request")
        headers = {
            key: value
            for key, value in bolt_response.first_headers_without_set_cookie().items()
            if key.lower() != "content-length"
        }
        return Response(content=bolt_response.body, status_code=bolt_response.status, headers=headers)

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        if on_startup:
            await run_in_threadpool(on_startup)
        try:
            yield
        finally:
            if on_shutdown:
                await run_in_threadpool(on_shutdown)

    return Starlette(
        routes=[Route("/slack/events", slack_events, methods=["POST"]), *ops_routes(services, metrics)],
        lifespan=lifespan,
    )


def ops_routes(
    services: Services, metrics: Metrics | None, *, slack_link: Callable[[], str] | None = None
) -> list[Route]:
    """`GET /healthz` and `GET /metrics`: unsigned (Slack never calls them) and off the Slack path.
    `slack_link`: the state of Socket Mode's connection, shown by `/healthz` (not counted against it:
    the runner reconnects by itself, and a restart would not reach Slack any sooner)."""

    async def metrics_page(_request: Request) -> Response:
        if metrics is None:
            return _error(404, "no metrics in this process")
        return Response(await run_in_threadpool(metrics.render), media_type=CONTENT_TYPE_LATEST)

    async def healthz(_request: Request) -> Response:
        def probe() -> None:
            with services.db.engine.connect() as connection:
                connection.execute(text("SELECT 1"))

        try:
            await run_in_threadpool(probe)
        except Exception as error:
            log.error("health check failed: database unreachable (%s)", type(error).__name__)
            return JSONResponse({"status": "unhealthy", "database": "unreachable"}, status_code=503)
        body: dict[str, Any] = {"status": "ok", "database": "ok"}
        if slack_link is not None:
            body["slack"] = slack_link()
        body["busy_workers"] = services.executor.unfinished + services.listener_executor.unfinished
        return JSONResponse(body)

    return [Route("/healthz", healthz, methods=["GET"]), Route("/metrics", metrics_page, methods=["GET"])]


class OpsListener:
    """`/healthz` and `/metrics` for Socket Mode, which has no HTTP server of its own: uvicorn on a
    thread, on a socket bound here, so a taken port stops the start with a clear error instead of
    ending a thread nobody watches."""

    def __init__(self, app: Starlette, host: str, port: int) -> None:
        import uvicorn  # only the long-running commands listen

        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        try:
            self._socket = socket.create_server((host, port), family=family)
        except OSError as error:
            raise ConfigError(
                f"cannot listen on {host}:{port} for /healthz and /metrics ({error.strerror or error}); "
                "set HOST and PORT to a free address"
            ) from None
        self.port: int = self._socket.getsockname()[1]
        config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, name="ops-http", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._server.should_exit = True
        self._thread.join(timeout)
        self._socket.close()
