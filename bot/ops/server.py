"""HTTP mode: one port serving `POST /slack/events` and `GET /healthz` (Starlette on uvicorn).

Bolt's own `app.start()` is a single-threaded development server. Here each Slack request is
dispatched on Starlette's thread pool; listeners ack first and finish on the tracked worker pool.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from slack_bolt import App
from sqlalchemy import text
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bot.access.services import Services
from bot.slack.bolt_request import SlackRequest

log = logging.getLogger(__name__)


def create_web_app(bolt_app: App, services: Services, *, on_startup: Any = None, on_shutdown: Any = None) -> Starlette:
    async def slack_events(request: Request) -> Response:
        raw = (await request.body()).decode("utf-8", errors="replace")
        bolt_request = SlackRequest(body=raw, query=request.url.query, headers=dict(request.headers))
        bolt_response = await run_in_threadpool(bolt_app.dispatch, bolt_request)
        headers = {
            key: value
            for key, value in bolt_response.first_headers_without_set_cookie().items()
            if key.lower() != "content-length"
        }
        return Response(content=bolt_response.body, status_code=bolt_response.status, headers=headers)

    async def healthz(_request: Request) -> Response:
        def probe() -> None:
            with services.db.engine.connect() as connection:
                connection.execute(text("SELECT 1"))

        try:
            await run_in_threadpool(probe)
        except Exception as error:
            log.error("health check failed: database unreachable (%s)", type(error).__name__)
            return JSONResponse({"status": "unhealthy", "database": "unreachable"}, status_code=503)
        return JSONResponse(
            {
                "status": "ok",
                "database": "ok",
                "busy_workers": services.executor.unfinished + services.listener_executor.unfinished,
            }
        )

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
        routes=[
            Route("/slack/events", slack_events, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
        ],
        lifespan=lifespan,
    )
