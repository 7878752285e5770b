"""The App Home tab, drawn from what a person asked for and what waits on their decision.

Slack refuses a whole view for one broken limit (over 100 blocks, a section text over 3,000
characters, over 250 kB), and a refused Home tab shows nothing at all. So the view is built
within those limits: long names and reasons are cut, entries that do not fit are left out, and
a final line says how many were left out and which command lists them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime

from slack_sdk.models.blocks import Block, ContextBlock, DividerBlock, HeaderBlock, MarkdownTextObject, SectionBlock
from slack_sdk.models.views import View

from bot.core.durations import format_duration
from bot.slack.formatting import escape, mention, number, role_list, scope_label, truncate
from bot.slack.messages import STATUS_LABEL, Choice, decision_blocks, term_text
from bot.slack.report_views import AccountSummary, home_review_blocks
from storage.models import AccessRequest
from storage.states import RequestStatus

MAX_VIEW_BLOCKS = 100
MAX_SECTION_TEXT = 3000
# Slack answers `view_too_large` over 250 kB; what is left is for the final line and the envelope.
MAX_VIEW_CHARS = 240_000
_NAME_CHARS = 200
_ROLES_CHARS = 500
_REASON_CHARS = 500
_NO_PICKER = "The roles of this account could not be loaded; decide in the request's thread, or try again later."


class _Budget:
    """What is left of the view's block count and size; an entry is taken whole or not at all."""

    def __init__(self, blocks: int, chars: int) -> None:
        self.blocks = blocks
        self.chars = chars

    def take(self, entry: Sequence[Block]) -> bool:
        size = sum(len(json.dumps(block.to_dict())) for block in entry)
        if len(entry) > self.blocks or size > self.chars:
            return False
        self.blocks -= len(entry)
        self.chars -= size
        return True


def _section(text: str) -> SectionBlock:
    return SectionBlock(text=MarkdownTextObject(text=truncate(text, MAX_SECTION_TEXT)))


def grant_key(request: AccessRequest) -> str:
    """Which picker a waiting request gets: the account's, for zones or for the whole account."""
    return f"{request.account_id}:zones" if request.zone_ids else request.account_id


def _scope(request: AccessRequest) -> str:
    return escape(truncate(scope_label(request.zone_names), _ROLES_CHARS))


def _own_line(request: AccessRequest, now: datetime) -> str:
    roles = request.granted_role_names or request.requested_role_names
    return (
        f"*{number(request.id)}* {escape(truncate(request.account_name, _NAME_CHARS))}: "
        f"{escape(truncate(role_list(roles), _ROLES_CHARS))} on the {_scope(request)}\n"
        f"{STATUS_LABEL[RequestStatus(request.status)]}, access for {term_text(request)}, "
        f"filed {format_duration(now - request.created_at)} ago"
    )


def _waiting_line(request: AccessRequest, now: datetime) -> str:
    return (
        f"*{number(request.id)}* {mention(request.requester_slack_id)} ({escape(request.requester_email)}) "
        f"asks for *{escape(truncate(role_list(request.requested_role_names), _ROLES_CHARS))}* "
        f"on *{escape(truncate(request.account_name, _NAME_CHARS))}* ({_scope(request)}), "
        f"{format_duration(now - request.created_at)} ago\n>{escape(truncate(request.reason, _REASON_CHARS))}"
    )


def home_view(
    *,
    own: Sequence[AccessRequest],
    waiting: Sequence[AccessRequest],
    grantable_roles: Mapping[str, Sequence[Choice]],
    now: datetime,
    own_total: int | None = None,
    waiting_total: int | None = None,
    review: Sequence[AccountSummary] = (),
    reviewed_at: datetime | None = None,
) -> View:
    """`grantable_roles`: the pickers' options by `grant_key`.
    `own_total`/`waiting_total`: how many there are in all, when the caller passed only the first ones.
    `review`: the last access review's counts for the accounts this person approves for."""
    header = HeaderBlock(text="Your Cloudflare access requests")
    blocks: list[Block] = [header]
    budget = _Budget(MAX_VIEW_BLOCKS - 2, MAX_VIEW_CHARS)  # the header, and the final line
    budget.take(blocks)
    review_blocks = home_review_blocks(review, as_of=reviewed_at)
    if not budget.take(review_blocks):  # a few blocks at most: reserved before the lists fill the tab
        review_blocks = []
    if not own:
        empty = _section(
            "You have no requests yet. Type `/cf-access` in any channel to ask for access to a Cloudflare "
            "account; its Super Administrators decide here in Slack."
        )
        budget.take([empty])
        blocks.append(empty)
    own_shown = 0
    for request in own:
        line = _section(_own_line(request, now))
        if not budget.take([line]):
            break
        blocks.append(line)
        own_shown += 1
    waiting_shown = 0
    heading: list[Block] = [DividerBlock(), HeaderBlock(text="Waiting for your decision")]
    for request in waiting:
        roles = grantable_roles.get(grant_key(request), ())
        entry: list[Block] = [_section(_waiting_line(request, now))]
        if roles:
            entry += decision_blocks(request, roles)
        else:  # a role picker without options is refused by Slack, and so would be the whole tab
            entry.append(ContextBlock(elements=[MarkdownTextObject(text=_NO_PICKER)]))
        if waiting_shown == 0:
            entry = heading + entry
        if not budget.take(entry):
            break
        blocks.extend(entry)
        waiting_shown += 1
    blocks.extend(review_blocks)
    blocks.append(
        ContextBlock(
            elements=[
                MarkdownTextObject(text=text)
                for text in _left_out(
                    (own_total if own_total is not None else len(own)) - own_shown,
                    (waiting_total if waiting_total is not None else len(waiting)) - waiting_shown,
                )
            ]
        )
    )
    return View(type="home", blocks=blocks)


def _left_out(own_more: int, waiting_more: int) -> list[str]:
    lines = []
    if own_more > 0:
        lines.append(f"…and {own_more} more of your requests: `/cf-access status` lists your latest ones.")
    if waiting_more > 0:
        lines.append(
            f"…and {waiting_more} more waiting for your decision: `/cf-access pending` lists them; "
            "decide in each request's thread."
        )
    return [*lines, "`/cf-access help` lists every command."]
