"""Block Kit for modals: the request form and the deny-with-reason form."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import timedelta

from slack_sdk.models.blocks import (
    Block,
    ContextBlock,
    ExternalDataMultiSelectElement,
    InputBlock,
    MarkdownTextObject,
    Option,
    PlainTextInputElement,
    SectionBlock,
    StaticMultiSelectElement,
    StaticSelectElement,
)
from slack_sdk.models.views import View

from bot.cloudflare.models import Account
from bot.slack.formatting import escape, mention, number, truncate
from bot.slack.ids import Action, Callback, with_suffix
from bot.slack.ids import Block as BlockId
from bot.slack.messages import Choice, duration_select, option, role_option

REASON_MAX = 500
#: The options an external select may answer with at once (Slack's limit).
MAX_OPTIONS = 100


def loading_modal(text: str = "Loading accounts from Cloudflare…") -> View:
    return View(
        type="modal",
        callback_id=Callback.REQUEST_MODAL,
        title="Cloudflare access",
        close="Cancel",
        blocks=[SectionBlock(text=MarkdownTextObject(text=text))],
    )


def request_modal(
    *,
    accounts: Sequence[Account],
    selected_account: Account | None,
    roles: Sequence[Choice],
    email: str | None,
    metadata: dict[str, str],
    duration_choices: Sequence[timedelta | None] = (),
    default_duration: timedelta | None = None,
    max_zones: int = 0,
) -> View:
    """Account, role(s) for that account, zones (`max_zones` > 0: the account speaks permission
    policies), how long, reason, and the e-mail the invite will go to."""
    account_options = [option(account.id, truncate(account.name, 75)) for account in accounts[:100]]
    initial_account = next((o for o in account_options if selected_account and o.value == selected_account.id), None)
    blocks: list[Block] = [
        InputBlock(
            block_id=BlockId.ACCOUNT,
            label="Cloudflare account",
            dispatch_action=True,
            element=StaticSelectElement(
                action_id=Action.MODAL_ACCOUNT,
                placeholder="Choose an account",
                options=account_options,
                initial_option=initial_account,
            ),
        )
    ]
    if selected_account is not None and roles:
        blocks.append(
            InputBlock(
                # A new block id per account, so a role picked for another account does not linger.
                block_id=with_suffix(BlockId.ROLES, selected_account.id),
                label="Role(s)",
                element=StaticMultiSelectElement(
                    action_id=Action.MODAL_ROLES,
                    placeholder="Choose one or more roles",
                    options=[role_option(role) for role in roles[:100]],
                ),
            )
        )
        if max_zones:
            blocks.append(zones_input(selected_account.id, max_zones))
    elif selected_account is not None:
        blocks.append(
            SectionBlock(text=MarkdownTextObject(text="No role of this account may be requested through Slack."))
        )
    else:
        blocks.append(ContextBlock(elements=[MarkdownTextObject(text="Choose an account to see its roles.")]))
    if duration_choices:
        blocks.append(
            InputBlock(
                block_id=BlockId.DURATION,
                label="Access for",
                hint="The access is removed when this time has passed; you are warned before, and can ask for more.",
                element=duration_select(Action.MODAL_DURATION, duration_choices, default_duration),
            )
        )
    blocks.append(
        InputBlock(
            block_id=BlockId.REASON,
            label="Reason",
            hint=f"Why you need this access (up to {REASON_MAX} characters). Approvers see it.",
            element=PlainTextInputElement(
                action_id=Action.MODAL_REASON, multiline=True, min_length=1, max_length=REASON_MAX
            ),
        )
    )
    invite_to = escape(email) if email else "_your Slack profile has no e-mail address_"
    blocks.append(
        ContextBlock(elements=[MarkdownTextObject(text=f"The Cloudflare invite will be sent to *{invite_to}*.")])
    )
    return View(
        type="modal",
        callback_id=Callback.REQUEST_MODAL,
        title="Cloudflare access",
        submit="Request",  # Slack refuses a view with inputs and no submit; empty fields are refused on submit
        close="Cancel",
        private_metadata=json.dumps(metadata),
        blocks=blocks,
    )


def zones_input(account_id: str, max_zones: int) -> InputBlock:
    """An external select: an account may have thousands of zones, searched as the user types
    (Slack asks the bot for options with `block_suggestion`). Empty means the whole account."""
    return InputBlock(
        block_id=with_suffix(BlockId.ZONES, account_id),
        label="Zones (optional)",
        optional=True,
        hint=f"Leave empty for the whole account. Up to {max_zones} zones; zone-scoped access needs a "
        "Domain permission group (e.g. Domain DNS).",
        element=ExternalDataMultiSelectElement(
            action_id=Action.MODAL_ZONES,
            placeholder="Search zones by name",
            min_query_length=0,
            max_selected_items=max_zones,
        ),
    )


def zone_options(names_and_ids: Sequence[tuple[str, str]]) -> list[dict[str, object]]:
    """The answer to an options request: zone names shown, zone ids as values."""
    return [Option(value=zone_id, label=truncate(name, 75)).to_dict() for name, zone_id in names_and_ids[:MAX_OPTIONS]]


def deny_modal(request_id: int, account_name: str, requester_slack_id: str, metadata: dict[str, str]) -> View:
    return View(
        type="modal",
        callback_id=Callback.DENY_MODAL,
        title=truncate(f"Deny {number(request_id)}", 24),
        submit="Deny",
        close="Back",
        private_metadata=json.dumps({**metadata, "request_id": str(request_id)}),
        blocks=[
            SectionBlock(
                text=MarkdownTextObject(
                    text=f"Deny {mention(requester_slack_id)}'s request {number(request_id)} for "
                    f"*{escape(account_name)}*? The requester is told, with your reason if you give one."
                )
            ),
            InputBlock(
                block_id=BlockId.DENY_REASON,
                label="Reason (optional)",
                optional=True,
                element=PlainTextInputElement(action_id=Action.DENY_REASON, multiline=True, max_length=REASON_MAX),
            ),
        ],
    )


def revoke_modal(request_id: int, account_name: str, requester_slack_id: str, metadata: dict[str, str]) -> View:
    return View(
        type="modal",
        callback_id=Callback.REVOKE_MODAL,
        title=truncate(f"Revoke {number(request_id)}", 24),
        submit="Revoke",
        close="Back",
        private_metadata=json.dumps({**metadata, "request_id": str(request_id)}),
        blocks=[
            SectionBlock(
                text=MarkdownTextObject(
                    text=f"Remove the access {mention(requester_slack_id)} got through {number(request_id)} on "
                    f"*{escape(account_name)}* now? The bot removes what it added in Cloudflare; the holder and "
                    "the thread are told, with your reason if you give one."
                )
            ),
            InputBlock(
                block_id=BlockId.REVOKE_REASON,
                label="Reason (optional)",
                optional=True,
                element=PlainTextInputElement(action_id=Action.REVOKE_REASON, multiline=True, max_length=REASON_MAX),
            ),
        ],
    )


def extension_modal(
    request_id: int, account_name: str, ends: str, choices: Sequence[timedelta | None], preset: timedelta | None
) -> View:
    return View(
        type="modal",
        callback_id=Callback.EXTENSION_MODAL,
        title="Request extension",
        submit="Request",
        close="Cancel",
        private_metadata=json.dumps({"request_id": str(request_id)}),
        blocks=[
            SectionBlock(
                text=MarkdownTextObject(
                    text=f"Your access to *{escape(account_name)}* ({number(request_id)}) ends {ends}. "
                    "An extension is decided by the account's approvers, like any request."
                )
            ),
            InputBlock(
                block_id=BlockId.DURATION,
                label="Extend by",
                element=duration_select(Action.MODAL_DURATION, choices, preset),
            ),
            InputBlock(
                block_id=BlockId.REASON,
                label="Reason",
                hint=f"Why you still need it (up to {REASON_MAX} characters). Approvers see it.",
                element=PlainTextInputElement(
                    action_id=Action.MODAL_REASON, multiline=True, min_length=1, max_length=REASON_MAX
                ),
            ),
        ],
    )
