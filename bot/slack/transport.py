"""Pooled HTTP for every outbound Slack call: Web API methods and `response_url` posts.

slack_sdk's clients open a new urllib connection per call (in production a TLS handshake to
Slack each time). Here they share one pool of keep-alive `http.client` connections per process
(`bot.core.keepalive`). Only the last hop is replaced (`_perform_urllib_http_request_internal` /
`_perform_http_request_internal`), so the SDK still builds requests, parses answers and runs its
retry handlers: non-2xx answers are raised as urllib's `HTTPError` and connection failures as
`URLError`, exactly as urllib does. With a proxy configured the SDK's own urllib path is used.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from http.client import HTTPException, HTTPMessage
from ssl import SSLContext
from typing import Any
from urllib.error import HTTPError, URLError
from urllib.parse import urlsplit
from urllib.request import Request

from slack_bolt import BoltContext, Respond
from slack_bolt.context.respond.internals import _build_message
from slack_sdk import WebClient
from slack_sdk.errors import SlackRequestError
from slack_sdk.models.attachments import Attachment
from slack_sdk.models.blocks import Block
from slack_sdk.webhook import WebhookClient, WebhookResponse

from bot.core.keepalive import KeepAlivePool
from bot.core.priority import FOREGROUND

#: Observes each call: (Web API method or "response_url", HTTP status or 0 when none came, seconds).
CallObserver = Callable[[str, int, float], None]

#: Headers urllib's Request carries that http.client sets itself.
_OWN_HEADERS = {"content-length", "host", "connection"}


@dataclass(frozen=True)
class Answer:
    status: int
    headers: HTTPMessage
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode(self.headers.get_content_charset() or "utf-8")


class SlackHttp:
    """One pool of keep-alive connections to Slack, shared by every client of the process."""

    def __init__(
        self,
        *,
        ssl: SSLContext | None = None,
        observe: CallObserver | None = None,
        max_idle: int = 32,
        idle_expiry: float = 30.0,
    ) -> None:
        self._pool = KeepAlivePool(ssl=ssl, max_idle=max_idle, idle_expiry=idle_expiry)
        self.observe = observe

    def close(self) -> None:
        self._pool.close()

    def post(self, url: str, request: Request, *, timeout: float, method: str) -> Answer:
        """POST `request` as urllib would, raising what urllib raises (HTTPError, URLError)."""
        FOREGROUND.step_aside()
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https") or not parts.hostname:
            raise SlackRequestError(f"Invalid URL detected: {url}")
        origin = (scheme, parts.hostname, parts.port or (443 if scheme == "https" else 80))
        target = parts.path or "/"
        if parts.query:
            target += "?" + parts.query
        headers = {key: str(value) for key, value in request.header_items() if key.lower() not in _OWN_HEADERS}
        body = request.data if isinstance(request.data, bytes) else None
        started = time.perf_counter()
        connection = self._pool.checkout(origin, timeout)
        try:
            if connection.sock is None:
                try:
                    connection.connect()
                except OSError as error:  # as urllib: a failure to connect is a URLError
                    raise URLError(error) from error
            connection.request("POST", target, body=body, headers=headers)
            response = connection.getresponse()
            data = response.read()
        except (OSError, HTTPException):
            # As urllib: later failures (reset, timeout, bad status line) are raised as they are.
            connection.close()
            self._observe(method, 0, started)
            raise
        self._pool.done(origin, connection, response)
        self._observe(method, response.status, started)
        if not 200 <= response.status < 300:
            raise HTTPError(url, response.status, response.reason, response.msg, io.BytesIO(data))
        return Answer(response.status, response.msg, data)

    def _observe(self, method: str, status: int, started: float) -> None:
        if self.observe is not None:
            self.observe(method, status, time.perf_counter() - started)


def _method_of(url: str) -> str:
    return url.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]


class PooledWebClient(WebClient):
    """A WebClient whose calls go over the shared pool; everything else is slack_sdk's."""

    def __init__(self, *args: Any, http: SlackHttp, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.http = http

    def _perform_urllib_http_request_internal(self, url: str, req: Request) -> dict[str, Any]:
        if self.proxy:
            return super()._perform_urllib_http_request_internal(url, req)
        answer = self.http.post(url, req, timeout=self.timeout, method=_method_of(url))
        if answer.headers.get_content_type() == "application/gzip":  # admin.analytics.getFile
            return {"status": answer.status, "headers": answer.headers, "body": answer.body}
        return {"status": answer.status, "headers": answer.headers, "body": answer.text}


class PooledWebhookClient(WebhookClient):
    """`response_url` posts over the shared pool."""

    def __init__(self, url: str, *, http: SlackHttp, **kwargs: Any) -> None:
        super().__init__(url, **kwargs)
        self.http = http

    def _perform_http_request_internal(self, url: str, req: Request) -> WebhookResponse:
        if self.proxy:
            return super()._perform_http_request_internal(url, req)  # type: ignore[no-any-return]
        answer = self.http.post(url, req, timeout=self.timeout, method="response_url")
        return WebhookResponse(
            url=url, status_code=answer.status, body=answer.text, headers=dict(answer.headers.items())
        )


class ResponseUrlRefused(Exception):
    """Slack did not take a `response_url` post (404 `expired_url` after 30 minutes, `used_url`
    after 5 posts, or any other non-200): the person did not see it."""


class PooledRespond(Respond):
    """Bolt's `respond`, posting over the shared pool instead of a new urllib connection.

    slack_sdk's WebhookClient hands a non-200 back as a response rather than raising, so a reply
    Slack refused would vanish; this raises `ResponseUrlRefused`, and callers tell the person
    another way."""

    def __init__(self, *, response_url: str | None, http: SlackHttp) -> None:
        super().__init__(response_url=response_url)
        self._http = http

    def __call__(
        self,
        text: str | dict[Any, Any] = "",
        blocks: Sequence[dict[Any, Any] | Block] | None = None,
        attachments: Sequence[dict[Any, Any] | Attachment] | None = None,
        response_type: str | None = None,
        replace_original: bool | None = None,
        delete_original: bool | None = None,
        unfurl_links: bool | None = None,
        unfurl_media: bool | None = None,
        thread_ts: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> WebhookResponse:
        if self.response_url is None:
            raise ValueError("respond is unsupported here as there is no response_url")
        if isinstance(text, dict):
            message = _build_message(**text)
        else:
            message = _build_message(
                text=text,
                blocks=blocks,
                attachments=attachments,
                response_type=response_type,
                replace_original=replace_original,
                delete_original=delete_original,
                unfurl_links=unfurl_links,
                unfurl_media=unfurl_media,
                thread_ts=thread_ts,
                metadata=metadata,
            )
        response = PooledWebhookClient(self.response_url, http=self._http).send_dict(message)
        if response.status_code != 200:
            raise ResponseUrlRefused(f"response_url answered {response.status_code}: {str(response.body)[:40]}")
        return response


def pooled_context_middleware(client: PooledWebClient) -> Callable[..., Any]:
    """A Bolt global middleware: the listener's `client` and `respond` use the shared pool.

    Bolt builds a fresh urllib WebClient per request (copying `App(client=...)`'s settings) and a
    `respond` that opens a new connection per call; both are swapped for pooled ones here.
    """

    def middleware(context: BoltContext, next: Callable[[], Any]) -> Any:
        context["client"] = client
        if context.response_url:
            context["respond"] = PooledRespond(response_url=context.response_url, http=client.http)
        return next()

    return middleware
