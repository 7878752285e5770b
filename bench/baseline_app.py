"""The baseline: a bare Bolt app answering one trivial command, with signature verification on,
served by the same Starlette + uvicorn stack as `cf-access-bot serve`.

With BASELINE_ACK=inline it answers as the bot does (`process_before_response`: the listener runs
on the request's thread); by default as Bolt does out of the box, where the request's thread
checks every 10 ms whether a second thread's listener has acked yet.
"""

from __future__ import annotations

import gc
import os
import sys

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
        process_before_response=os.environ.get("BASELINE_ACK") == "inline",
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
    # The interpreter tuned as `cf-access-bot serve` tunes it: the ratio is to weigh the bot's own
    # work, not a setting the bare app would have for one line.
    # (Not bot.ops.cli's function itself: importing the bot would weigh on this app's memory.)
    sys.setswitchinterval(0.001)
    gc.collect()
    gc.freeze()
    uvicorn.run(web, host="127.0.0.1", port=int(os.environ["PORT"]), log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
