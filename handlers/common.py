"""What every listener shares: failure reporting and telling the person who acted."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from typing import Any

from slack_bolt import Respond
from slack_sdk.errors import SlackApiError

from bot.access.services import Services
from bot.access.terms import duration_choices
from bot.cloudflare.errors import CloudflareError
from bot.core.config import Settings
from bot.slack.formatting import escape
from bot.slack.gateway import NO_ANSWER, error_code
from bot.slack.transport import ResponseUrlRefused

log = logging.getLogger(__name__)


def failure_text(error: Exception) -> str:
    reference = secrets.token_hex(4)
    log.exception("listener failed (ref %s)", reference)
    if isinstance(error, CloudflareError):
        return f":warning: Cloudflare did not answer as expected: {escape(str(error))}. Nothing was changed; try again in a minute (ref `{reference}`)."
    if isinstance(error, SlackApiError):
        return f":warning: Slack refused a call ({escape(error_code(error))}). Nothing was lost; try again (ref `{reference}`)."
    return f":warning: Something went wrong on our side. Nothing was lost; try again, or give your Slack admin ref `{reference}`."


def tell_actor(services: Services, body: dict[str, Any], respond: Respond | None, text: str) -> None:
    """Ephemeral to the person who acted: via response_url in messages, a DM from Home or modals."""
    user_id = body.get("user", {}).get("id") or body.get("user_id")
    late = False
    if respond is not None and body.get("response_url"):
        try:
            respond(text=text, response_type="ephemeral", replace_original=False)
            return
        except Exception as error:  # fall through to an ephemeral or a DM; the person must hear
            log.warning("response_url failed (%s); telling %s another way", type(error).__name__, user_id)
            # Refused: usually expired, 30 minutes on, when they may have left the channel, where
            # Slack shows an ephemeral only to someone active in it.
            late = isinstance(error, ResponseUrlRefused)
    # A click's message, or the channel a command was typed in (where the bot may not be).
    channel_id = (body.get("container") or {}).get("channel_id") or body.get("channel_id")
    if channel_id and user_id and not late:
        try:
            services.slack.ephemeral(channel_id, user_id, text)
            return
        except SlackApiError:
            pass
        except NO_ANSWER:  # it may have arrived; a DM as well is better than neither
            pass
    if user_id:
        services.notifier.tell(user_id, text)


#: The parts of a payload `tell_actor` reads.
_REPLY_FIELDS = ("user", "user_id", "response_url", "container", "channel_id")


def reply_address(body: dict[str, Any]) -> dict[str, Any]:
    """Where to answer the person who acted: what work queued after an ack keeps of a payload that
    is large (a click's carries the whole message), in place of all of it."""
    return {key: body[key] for key in _REPLY_FIELDS if key in body}


def run_after_ack(services: Services, body: dict[str, Any], respond: Respond | None, work: Callable[[], None]) -> None:
    """Run the slow part of a listener on the work pool: the ack goes back as the listener returns.

    Listeners only ack and hand over (Bolt answers Slack once the listener returns): an ack never
    waits behind Cloudflare or Slack calls. A failure still reaches the person, with a reference
    to find it in the logs.
    """
    services.executor.submit(_guarded(services, reply_address(body), respond, work))


def run_at_once(services: Services, body: dict[str, Any], respond: Respond | None, work: Callable[[], None]) -> None:
    """Like `run_after_ack`, on the listener pool, which never queues behind follow-up work and
    never steps aside for acks: for opening a form, whose trigger Slack honours once, for 3 s."""
    services.listener_executor.submit(_guarded(services, reply_address(body), respond, work))


def _guarded(
    services: Services, body: dict[str, Any], respond: Respond | None, work: Callable[[], None]
) -> Callable[[], None]:
    def guarded() -> None:
        try:
            work()
        except Exception as error:
            tell_actor(services, body, respond, failure_text(error))

    return guarded


def form_durations(settings: Settings) -> dict[str, Any]:
    """The request form's "Access for" choices, preset to DEFAULT_ACCESS_DURATION (else the maximum)."""
    default = settings.default_access_duration or settings.max_access_duration
    return {"duration_choices": duration_choices(settings, default), "default_duration": default}
