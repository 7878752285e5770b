"""The App Home tab, drawn from what a person asked for and what waits on their decision."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

from slack_sdk.models.blocks import Block, ContextBlock, DividerBlock, HeaderBlock, MarkdownTextObject, SectionBlock
from slack_sdk.models.views import View

from bot.cloudflare.models import Role
from bot.core.durations import format_duration
from bot.slack.formatting import escape, mention, number, role_list
from bot.slack.messages import STATUS_LABEL, decision_blocks
from storage.models import AccessRequest
from storage.states import RequestStatus


def home_view(
    *,
    own: Sequence[AccessRequest],
    waiting: Sequence[AccessRequest],
    grantable_roles: Mapping[str, Sequence[Role]],
    now: datetime,
) -> View:
    blocks: list[Block] = [HeaderBlock(text="Your Cloudflare access requests")]
    if not own:
        blocks.append(
            SectionBlock(
                text=MarkdownTextObject(
                    text="You have no requests yet. Type `/cf-access` in any channel to ask for access to a Cloudflare "
                    "account; its Super Administrators decide here in Slack."
                )
            )
        )
    for request in own:
        roles = request.granted_role_names or request.requested_role_names
        blocks.append(
            SectionBlock(
                text=MarkdownTextObject(
                    text=f"*{number(request.id)}* {escape(request.account_name)}: {escape(role_list(roles))}\n"
                    f"{STATUS_LABEL[RequestStatus(request.status)]}, filed {format_duration(now - request.created_at)} ago"
                )
            )
        )
    if waiting:
        blocks.extend([DividerBlock(), HeaderBlock(text="Waiting for your decision")])
        for request in waiting:
            blocks.append(
                SectionBlock(
                    text=MarkdownTextObject(
                        text=f"*{number(request.id)}* {mention(request.requester_slack_id)} ({escape(request.requester_email)}) "
                        f"asks for *{escape(role_list(request.requested_role_names))}* on *{escape(request.account_name)}*, "
                        f"{format_duration(now - request.created_at)} ago\n>{escape(request.reason[:500])}"
                    )
                )
            )
            blocks.extend(decision_blocks(request, grantable_roles.get(request.account_id, ())))
    blocks.append(ContextBlock(elements=[MarkdownTextObject(text="`/cf-access help` lists every command.")]))
    return View(type="home", blocks=blocks[:100])
