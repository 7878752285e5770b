"""Small helpers for reading what users saw and what was stored."""

from __future__ import annotations

from typing import Any

from storage.models import AccessRequest, AuditEvent
from storage.repository import audit_for, get_request
from tests.fakes.slack import FakeSlack, Message
from tests.harness import BotUnderTest


def stored(bot: BotUnderTest, request_id: int) -> AccessRequest:
    with bot.db.session() as session:
        request = get_request(session, request_id)
    assert request is not None
    return request


def audit_events(bot: BotUnderTest, request_id: int) -> list[AuditEvent]:
    with bot.db.session() as session:
        return list(audit_for(session, request_id))


def audit_names(bot: BotUnderTest, request_id: int) -> list[str]:
    return [event.event for event in audit_events(bot, request_id)]


def roots_of(slack: FakeSlack, request_id: int) -> list[Message]:
    return [m for m in slack.roots() if f"Access request #{request_id}" in m.all_text()]


def reply_text(slack: FakeSlack, response_id: str) -> str:
    replies = slack.responses_for(response_id)
    assert replies, f"no reply on response_url {response_id}"
    return str(replies[-1]["text"])


def answer(bot: BotUnderTest, slack: FakeSlack, text: str, user_id: str) -> str:
    """What the user sees after a slash command: the ack text, or the response_url reply."""
    reply = bot.command(text, user_id=user_id)
    assert reply.response.status_code == 200, reply.response.text
    if reply.response.text:
        return reply.response.text
    return reply_text(slack, reply.response_id)


def file_request(
    bot: BotUnderTest,
    slack: FakeSlack,
    user_id: str,
    text: str = 'request "Acme Production" DNS need to rotate records',
) -> int:
    said = answer(bot, slack, text, user_id)
    assert "filed" in said, said
    return int(said.split("#", 1)[1].split()[0])


def texts(messages: list[Any]) -> str:
    return "\n".join(m.all_text() if hasattr(m, "all_text") else m.text for m in messages)
