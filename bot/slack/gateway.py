"""The bot's outbound Slack calls, on one slack_sdk WebClient with retry handlers.

Callers get plain values back (ids, ts); Slack's wire format stays here.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from http.client import HTTPException
from typing import Any
from urllib.error import URLError

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
    ServerErrorRetryHandler,
)
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState
from slack_sdk.models.blocks import Block
from slack_sdk.models.views import View

from bot.slack.transport import PooledWebClient, SlackHttp

__all__ = [
    "NO_ANSWER",
    "Block",
    "PostedMessage",
    "SlackError",
    "SlackGateway",
    "SlackProfile",
    "View",
    "error_code",
    "make_web_client",
    "may_have_taken_effect",
]

log = logging.getLogger(__name__)
#: What a gateway call raises when no answer came from Slack (refused, reset, timed out).
NO_ANSWER: tuple[type[Exception], ...] = (OSError, HTTPException)
#: The kind of NO_ANSWER that means the call never reached Slack: the connection (or, behind a
#: proxy, the sending) failed, which urllib and our transport raise as URLError. Any other no-answer
#: may have been carried out.
NEVER_SENT = URLError


#: What Slack's error codes look like (`channel_not_found`, `invalid_arguments`).
_ERROR_CODE = re.compile(r"[a-z0-9_.]{1,64}")


def error_code(error: SlackApiError) -> str:
    """Slack's error code; `http_<status>` when the answer carried none (a proxy's or load
    balancer's HTML page, which slack_sdk puts in `error` as prose not fit to show people)."""
    found = str(error.response.get("error") or "")
    if _ERROR_CODE.fullmatch(found):
        return found
    return f"http_{error.response.status_code}" if found else "unknown_error"


class SlackError(SlackApiError):
    """What every gateway call raises when Slack answers with an error: `code` is Slack's `error`.

    A call that got no answer (after slack_sdk's retries) raises what urllib raises instead,
    `OSError` or `http.client.HTTPException` (`NO_ANSWER`): it may have taken effect, and only the
    caller knows whether that reads as "no" (a failure to cache, a digest to post again) or not."""

    @property
    def code(self) -> str:
        return error_code(self)


#: A gateway call that failed: Slack's error, or no answer.
SLACK_FAILED: tuple[type[Exception], ...] = (SlackError, *NO_ANSWER)


#: Set on an error raised before any message was posted (a DM whose conversation could not be opened).
_NOT_POSTED = "cf_access_not_posted"


def may_have_taken_effect(error: Exception) -> bool:
    """Whether a failed call may still have been carried out: no answer after sending, or a 5xx
    (Slack may answer 5xx after posting). Slack's own refusals and calls never sent were not."""
    if getattr(error, _NOT_POSTED, False):
        return False
    if isinstance(error, SlackError):
        return int(error.response.status_code) >= 500
    return not isinstance(error, NEVER_SENT)


def failure_reason(error: Exception) -> str:
    """For a log line: Slack's error code, or that no answer came. The error's own text is left
    out: it may name a proxy with its credentials."""
    return error.code if isinstance(error, SlackError) else f"no answer from Slack ({type(error).__name__})"


@contextmanager
def _slack_errors() -> Iterator[None]:
    try:
        yield
    except SlackError:
        raise
    except SlackApiError as error:
        raise SlackError(str(error), error.response) from error  # type: ignore[no-untyped-call]


@dataclass(frozen=True)
class PostedMessage:
    channel_id: str
    ts: str


@dataclass(frozen=True)
class SlackProfile:
    """A Slack user as far as asking for access goes: who they are and how they stand in the workspace."""

    user_id: str
    email: str | None
    name: str
    is_bot: bool = False
    deleted: bool = False
    is_restricted: bool = False  # multi-channel guest
    is_ultra_restricted: bool = False  # single-channel guest
    is_stranger: bool = False  # Slack Connect: from another organisation
    team_id: str | None = None
    email_confirmed: bool = True

    @property
    def is_guest(self) -> bool:
        return self.is_restricted or self.is_ultra_restricted

    @property
    def standing(self) -> str:
        """How approvers see the requester: a full member, or which kind of guest."""
        if self.is_ultra_restricted:
            return "single-channel guest"
        if self.is_restricted:
            return "multi-channel guest"
        return "workspace member"


# A post that met a 5xx or a dropped connection may already be in the channel: sending it again
# would show it twice. Reads, updates and publishes are safe to repeat; a trigger is good once.
_NOT_REPEATABLE = ("chat.postMessage", "chat.postEphemeral", "views.open")


def _repeatable(request: HttpRequest) -> bool:
    return not request.url.rstrip("/").endswith(_NOT_REPEATABLE)


class _OnlyRepeatable:
    """Mixed into slack_sdk's retry handlers: a call that may have taken effect is not sent again."""

    def _can_retry(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        retry = super()._can_retry(state=state, request=request, response=response, error=error)  # type: ignore[misc]
        return _repeatable(request) and bool(retry)


class _RepeatableServerErrorRetryHandler(_OnlyRepeatable, ServerErrorRetryHandler):
    pass


class _RepeatableConnectionErrorRetryHandler(_OnlyRepeatable, ConnectionErrorRetryHandler):
    pass


def make_web_client(token: str, base_url: str, *, timeout: int = 10, http: SlackHttp | None = None) -> PooledWebClient:
    """The process's WebClient: calls share one keep-alive pool (`http`, made here when not given)."""
    client = PooledWebClient(token=token, base_url=base_url, timeout=timeout, http=http or SlackHttp())
    # 429 means "not done": always safe to send again after Retry-After.
    client.retry_handlers = [
        RateLimitErrorRetryHandler(max_retry_count=3),
        _RepeatableServerErrorRetryHandler(max_retry_count=2),
        _RepeatableConnectionErrorRetryHandler(max_retry_count=2),
    ]
    return client


def _dicts(blocks: Sequence[Block]) -> list[dict[str, Any]]:
    if len(blocks) > 50:
        raise ValueError(f"a Slack message takes at most 50 blocks, got {len(blocks)}")
    return [block.to_dict() for block in blocks]


class SlackGateway:
    def __init__(self, client: WebClient) -> None:
        self.client = client
        self._dm_channels: dict[str, str] = {}
        self._team_id: str | None = None
        self._lock = threading.Lock()

    def lookup_user_id(self, email: str) -> str | None:
        try:
            with _slack_errors():
                response = self.client.users_lookupByEmail(email=email)
        except SlackError as error:
            if error.code in ("users_not_found", "user_not_found"):
                return None
            raise
        user = response["user"]
        return None if user.get("deleted") or user.get("is_bot") else str(user["id"])

    def users_page(self, cursor: str | None, *, limit: int) -> tuple[list[dict[str, Any]], str | None]:
        """One page of the workspace's users (users.list: deactivated ones too) and the cursor of the
        next, None after the last. A page may hold fewer than `limit` before the end."""
        with _slack_errors():
            response = (
                self.client.users_list(limit=limit, cursor=cursor) if cursor else self.client.users_list(limit=limit)
            )
        members = response.get("members") or []
        following = str((response.get("response_metadata") or {}).get("next_cursor") or "")
        return [dict(member) for member in members], following or None

    def profile(self, user_id: str) -> SlackProfile:
        with _slack_errors():
            user = self.client.users_info(user=user_id)["user"]
        profile = user.get("profile") or {}
        email = profile.get("email") or None
        name = profile.get("display_name") or profile.get("real_name") or user.get("name") or user_id
        return SlackProfile(
            user_id,
            email,
            name,
            is_bot=bool(user.get("is_bot")) or bool(user.get("is_app_user")),
            deleted=bool(user.get("deleted")),
            is_restricted=bool(user.get("is_restricted")),
            is_ultra_restricted=bool(user.get("is_ultra_restricted")),
            is_stranger=bool(user.get("is_stranger")),
            team_id=user.get("team_id") or profile.get("team"),
            # Absent on older payloads: only an explicit false means unconfirmed.
            email_confirmed=user.get("is_email_confirmed") is not False,
        )

    def workspace_id(self) -> str:
        """Our own workspace's team id (auth.test, asked once): a requester from another is a stranger."""
        with self._lock:
            if self._team_id is not None:
                return self._team_id
        with _slack_errors():
            team_id = str(self.client.auth_test()["team_id"])
        with self._lock:
            self._team_id = team_id
        return team_id

    def dm_channel(self, user_id: str) -> str:
        with self._lock:
            cached = self._dm_channels.get(user_id)
        if cached:
            return cached
        with _slack_errors():
            channel = str(self.client.conversations_open(users=user_id)["channel"]["id"])
        with self._lock:
            self._dm_channels[user_id] = channel
        return channel

    def post(
        self, channel_id: str, text: str, blocks: Sequence[Block] = (), *, thread_ts: str | None = None
    ) -> PostedMessage:
        kwargs: dict[str, Any] = {"channel": channel_id, "text": text, "unfurl_links": False}
        if blocks:
            kwargs["blocks"] = _dicts(blocks)
        if thread_ts:
            kwargs["thread_ts"] = thread_ts
        with _slack_errors():
            response = self.client.chat_postMessage(**kwargs)
        return PostedMessage(str(response["channel"]), str(response["ts"]))

    def dm(self, user_id: str, text: str, blocks: Sequence[Block] = ()) -> PostedMessage:
        """Post in the bot's DM with `user_id`. Slack takes a user id as `channel` and answers with
        the DM's id, which is kept: no `conversations.open` first (Tier 3, one per new person)."""
        with self._lock:
            known = self._dm_channels.get(user_id)
        if known:
            return self.post(known, text, blocks)
        try:
            posted = self.post(user_id, text, blocks)
        except SlackError as error:
            if error.code != "channel_not_found":
                raise
            try:
                channel = self.dm_channel(user_id)  # open the conversation, then post
            except SLACK_FAILED as failed:
                setattr(failed, _NOT_POSTED, True)  # whatever it was, no message went out
                raise
            return self.post(channel, text, blocks)
        with self._lock:
            self._dm_channels[user_id] = posted.channel_id
        return posted

    def update(self, channel_id: str, ts: str, text: str, blocks: Sequence[Block]) -> None:
        with _slack_errors():
            self.client.chat_update(channel=channel_id, ts=ts, text=text, blocks=_dicts(blocks))

    def ephemeral(self, channel_id: str, user_id: str, text: str) -> None:
        with _slack_errors():
            self.client.chat_postEphemeral(channel=channel_id, user=user_id, text=text)

    def open_view(self, trigger_id: str, view: View) -> tuple[str, str]:
        with _slack_errors():
            response = self.client.views_open(trigger_id=trigger_id, view=view.to_dict())
        return str(response["view"]["id"]), str(response["view"]["hash"])

    def update_view(self, view_id: str, view: View, *, view_hash: str | None = None) -> None:
        kwargs: dict[str, Any] = {"view_id": view_id, "view": view.to_dict()}
        if view_hash:
            kwargs["hash"] = view_hash
        with _slack_errors():
            self.client.views_update(**kwargs)

    def publish_home(self, user_id: str, view: View) -> None:
        with _slack_errors():
            self.client.views_publish(user_id=user_id, view=view.to_dict())
