"""The baseline: a bare Bolt app answering one trivial command, with signature verification on,
served by the same Starlette + uvicorn stack as `cf-access-bot serve`."""

from __future__ import annotations

import os

import uvicorn
from slack_bolt import Ack, App
from slack_sdk import WebClient
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from bot.slack.bolt_request import SlackRequest


def main() -> None:
    app = App(
        client=WebClient(token=os.environ["SLACK_BOT_TOKEN"], base_url=os.environ["SLACK_API_URL"]),
        signing_secret=os.environ["SLACK_SIGNING_SECRET"],
        token_verification_enabled=False,
    )

    @app.command("/cf-access")
    def trivial(ack: Ack) -> None:
        ack("ok")

    async def slack_events(request: Request) -> Response:
        raw = (await request.body()).decode()
        bolt_response = await run_in_threadpool(app.dispatch, SlackRequest(body=raw, headers=dict(request.headers)))
        return Response(bolt_response.body, status_code=bolt_response.status)

    async def healthz(_request: Request) -> Response:
        return PlainTextResponse("ok")

    web = Starlette(routes=[Route("/slack/events", slack_events, methods=["POST"]), Route("/healthz", healthz)])
    uvicorn.run(web, host="127.0.0.1", port=int(os.environ["PORT"]), log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
