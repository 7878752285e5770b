"""Block Kit for request messages: the approvers' thread root and its state line.

Builders are pure functions of a request and what to show; handlers decide, builders draw.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any, Protocol

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ContextBlock,
    HeaderBlock,
    MarkdownTextObject,
    Option,
    SectionBlock,
    StaticMultiSelectElement,
    StaticSelectElement,
)

from bot.core.durations import format_duration
from bot.slack.formatting import escape, mention, mentions, number, scope_text, shown_roles, slack_date, truncate
from bot.slack.ids import Action, with_suffix
from bot.slack.ids import Block as BlockId
from storage.models import AccessRequest
from storage.states import RequestStatus

STATUS_LABEL = {
    RequestStatus.PENDING: ":hourglass_flowing_sand: Pending",
    RequestStatus.APPROVED: ":white_check_mark: Approved, sending invite",
    RequestStatus.INVITED: ":email: Invite sent, waiting for acceptance",
    RequestStatus.ACCEPTED: ":tada: Accepted",
    RequestStatus.DENIED: ":no_entry: Denied",
    RequestStatus.CANCELLED: ":wastebasket: Cancelled",
    RequestStatus.EXPIRED: ":zzz: Expired",
    RequestStatus.FAILED: ":warning: Failed",
    RequestStatus.ENDED: ":checkered_flag: Ended, access removed",
    RequestStatus.REVOKED: ":no_entry_sign: Revoked, access removed",
}


class Choice(Protocol):
    """What a picker offers: a legacy role or a permission group (id and name are all it shows)."""

    @property
    def id(self) -> str: ...

    @property
    def name(self) -> str: ...


class _SerialisedOnce(Option):
    """An option validated and turned into JSON once. The same role's option is in every root and
    every Home tab, and slack_sdk validates each object again on every `to_dict` (~50 µs an option:
    3 ms for a picker of 60 roles, the largest CPU cost of drawing a root)."""

    def to_dict(self, option_type: str = "block") -> dict[str, Any]:
        if option_type != "block":
            return super().to_dict(option_type)
        done: dict[str, Any] | None = self.__dict__.get("_as_block")
        if done is None:
            done = super().to_dict(option_type)
            self.__dict__["_as_block"] = done
        # A copy per use: whoever sends the message may add to it; the cached one stays as validated.
        return {key: dict(value) if isinstance(value, dict) else value for key, value in done.items()}


@lru_cache(maxsize=4096)
def option(value: str, label: str) -> Option:
    """The option for `value` shown as `label` (the same object each time, so it is validated once)."""
    return _SerialisedOnce(value=value, label=label)


def role_option(role: Choice) -> Option:
    # Slack allows option descriptions only in checkboxes, radio buttons and overflow menus.
    return option(role.id, truncate(role.name, 75))


def summary_text(request: AccessRequest) -> str:
    """The notification text (and screen-reader text) of a request's root message."""
    zones = f" ({scope_text(request.zone_names)})" if request.zone_names else ""
    return (
        f"Access request {number(request.id)}: {mention(request.requester_slack_id)} asks for "
        f"{shown_roles(request.requested_role_names)} on {escape(request.account_name)}{zones}"
    )


def state_line(request: AccessRequest) -> str:
    status = RequestStatus(request.status)
    label = STATUS_LABEL[status]
    granted = shown_roles(request.granted_role_names or [])
    decided_by = mention(request.decided_by_slack_id) if request.decided_by_slack_id else "someone"
    decided_at = slack_date(request.decided_at) if request.decided_at else ""
    match status:
        case RequestStatus.APPROVED | RequestStatus.INVITED | RequestStatus.ACCEPTED:
            added = " (added to an existing membership)" if request.member_added_to else ""
            return f"{label}. Approved by {decided_by} {decided_at}, granting {granted} on the {scope_text(request.zone_names)}{added}."
        case RequestStatus.DENIED:
            note = f" Reason: {escape(request.decision_note)}" if request.decision_note else ""
            return f"{label} by {decided_by} {decided_at}.{note}"
        case RequestStatus.CANCELLED:
            return f"{label}. {escape(request.decision_note or 'Withdrawn by the requester.')}"
        case RequestStatus.FAILED:
            return f"{label}. {escape(request.invite_error or 'The invite could not be sent.')}"
        case _:
            return label


def request_root(
    request: AccessRequest,
    *,
    now: datetime,
    approver_ids: Sequence[str],
    grantable_roles: Sequence[Choice],
    duration_choices: Sequence[timedelta | None] = (),
) -> list[Block]:
    """The thread root: who, what, for how long, why; while pending the role and duration pickers and
    Approve / Deny; while access is held, Revoke access."""
    age = format_duration(now - request.created_at)
    extends = f" (extends {number(request.extends_request_id)})" if request.extends_request_id else ""
    blocks: list[Block] = [
        HeaderBlock(text=f"Access request {number(request.id)}{extends}"),
        SectionBlock(
            fields=[
                MarkdownTextObject(
                    text=f"*Requester*\n{mention(request.requester_slack_id)}"
                    + (f" ({escape(request.requester_standing)})" if request.requester_standing else "")
                ),
                MarkdownTextObject(text=f"*Invite goes to*\n{escape(request.requester_email)}"),
                MarkdownTextObject(text=f"*Account*\n{escape(request.account_name)}"),
                MarkdownTextObject(text=f"*Requested roles*\n{shown_roles(request.requested_role_names)}"),
                MarkdownTextObject(text=f"*Scope*\n{scope_text(request.zone_names)}"),
                MarkdownTextObject(text=f"*Filed*\n{slack_date(request.created_at)} ({age} ago)"),
                MarkdownTextObject(text=f"*Status*\n{STATUS_LABEL[RequestStatus(request.status)]}"),
                MarkdownTextObject(text=f"*Access for*\n{term_text(request)}"),
            ]
        ),
        SectionBlock(text=MarkdownTextObject(text=f"*Reason*\n{escape(truncate(request.reason, 2900))}")),
    ]
    status = RequestStatus(request.status)
    if status == RequestStatus.PENDING:
        blocks.extend(decision_blocks(request, grantable_roles, duration_choices))
        if approver_ids:
            blocks.append(ContextBlock(elements=[MarkdownTextObject(text=f"Approvers: {mentions(approver_ids)}")]))
    else:
        blocks.append(ContextBlock(elements=[MarkdownTextObject(text=truncate(state_line(request), 2900))]))
    if status == RequestStatus.FAILED:
        blocks.append(
            ActionsBlock(
                block_id=with_suffix(BlockId.DECISION, request.id),
                elements=[
                    ButtonElement(
                        text="Retry invite", action_id=Action.RETRY_INVITE, value=str(request.id), style="primary"
                    )
                ],
            )
        )
    if status in (RequestStatus.INVITED, RequestStatus.ACCEPTED) and not request.extends_request_id:
        blocks.append(
            ActionsBlock(
                block_id=with_suffix(BlockId.DECISION, request.id),
                elements=[
                    ButtonElement(
                        text="Revoke access", action_id=Action.REVOKE_ACCESS, value=str(request.id), style="danger"
                    )
                ],
            )
        )
    return blocks


def duration_label(duration: timedelta | None) -> str:
    return format_duration(duration) if duration is not None else "permanent"


def duration_value(duration: timedelta | None) -> str:
    """An option value: seconds, or `permanent`."""
    return str(int(duration.total_seconds())) if duration is not None else "permanent"


def term_text(request: AccessRequest) -> str:
    """How long the grant lasts: until when once approved, else what was asked."""
    if request.access_ends_at is not None:
        return f"until {slack_date(request.access_ends_at)}"
    approved = request.granted_role_ids is not None
    seconds = request.granted_duration_s if approved else request.requested_duration_s
    return duration_label(timedelta(seconds=seconds) if seconds is not None else None)


def duration_select(
    action_id: str, choices: Sequence[timedelta | None], preset: timedelta | None
) -> StaticSelectElement:
    options = [option(duration_value(d), duration_label(d)) for d in choices[:100]]
    initial = next((o for o in options if o.value == duration_value(preset)), None)
    return StaticSelectElement(action_id=action_id, placeholder="How long", options=options, initial_option=initial)


def decision_blocks(
    request: AccessRequest, grantable_roles: Sequence[Choice], duration_choices: Sequence[timedelta | None] = ()
) -> list[Block]:
    options = [role_option(role) for role in grantable_roles[:100]]
    by_id = {option.value: option for option in options}
    initial = [by_id[role_id] for role_id in request.requested_role_ids if role_id in by_id]
    picker = StaticMultiSelectElement(
        action_id=Action.GRANT_ROLES,
        placeholder="Roles to grant",
        options=options,
        initial_options=initial or None,
    )
    return [
        SectionBlock(
            block_id=with_suffix(BlockId.GRANT, request.id),
            text=MarkdownTextObject(text="*Roles to grant* (preset to the request; change before approving)"),
            accessory=picker,
        ),
        *(
            [
                SectionBlock(
                    block_id=with_suffix(BlockId.DURATION, request.id),
                    text=MarkdownTextObject(text="*Access for* (preset to the request; shorten before approving)"),
                    accessory=duration_select(
                        Action.GRANT_DURATION,
                        duration_choices,
                        timedelta(seconds=request.requested_duration_s)
                        if request.requested_duration_s is not None
                        else None,
                    ),
                )
            ]
            if duration_choices
            else []
        ),
        ActionsBlock(
            block_id=with_suffix(BlockId.DECISION, request.id),
            elements=[
                ButtonElement(text="Approve", action_id=Action.APPROVE, value=str(request.id), style="primary"),
                ButtonElement(text="Deny", action_id=Action.DENY, value=str(request.id), style="danger"),
            ],
        ),
    ]


def resend_offer(request: AccessRequest) -> list[Block]:
    return [
        SectionBlock(
            text=MarkdownTextObject(
                text=f"The invite for {number(request.id)} has not been accepted yet. "
                "Resending cancels the pending invite in Cloudflare and sends a new e-mail."
            )
        ),
        ActionsBlock(
            elements=[ButtonElement(text="Resend invite", action_id=Action.RESEND_INVITE, value=str(request.id))]
        ),
    ]


def end_warning_blocks(request: AccessRequest, text: str) -> list[Block]:
    return [
        SectionBlock(text=MarkdownTextObject(text=truncate(text, 2990))),
        ActionsBlock(
            block_id=with_suffix(BlockId.DECISION, request.id),
            elements=[
                ButtonElement(
                    text="Request extension", action_id=Action.REQUEST_EXTENSION, value=str(request.id), style="primary"
                )
            ],
        ),
    ]


def text_block(text: str) -> list[Block]:
    return [SectionBlock(text=MarkdownTextObject(text=truncate(text, 2990)))]
