"""Every Slack action, block and callback id the bot uses, so a typo is an import error."""

from __future__ import annotations

from enum import StrEnum

COMMAND = "/cf-access"


class Action(StrEnum):
    APPROVE = "request_approve"
    DENY = "request_deny"
    GRANT_ROLES = "grant_roles"
    RETRY_INVITE = "retry_invite"
    RESEND_INVITE = "resend_invite"
    MODAL_ACCOUNT = "account_select"
    MODAL_ROLES = "roles_select"
    MODAL_REASON = "reason_input"
    DENY_REASON = "deny_reason_input"
    GRANT_DURATION = "grant_duration"
    REVOKE_ACCESS = "revoke_access"
    REVOKE_REASON = "revoke_reason_input"
    REQUEST_EXTENSION = "request_extension"
    MODAL_DURATION = "duration_select"
    MODAL_ZONES = "zones_select"


class Block(StrEnum):
    ACCOUNT = "account"
    ROLES = "roles"  # suffixed with the account id, so a new account resets the selection
    REASON = "reason"
    DECISION = "decision"  # suffixed with the request id
    GRANT = "grant"  # suffixed with the request id
    DENY_REASON = "deny_reason"
    DURATION = "duration"  # in a thread root: suffixed with the request id; in a form: as is
    REVOKE_REASON = "revoke_reason"
    ZONES = "zones"  # suffixed with the account id, like ROLES


class Callback(StrEnum):
    REQUEST_MODAL = "cf_access_request"
    DENY_MODAL = "cf_access_deny"
    REVOKE_MODAL = "cf_access_revoke"
    EXTENSION_MODAL = "cf_access_extend"


def with_suffix(block: Block, suffix: object) -> str:
    return f"{block.value}:{suffix}"


def suffix_of(block_id: str) -> str:
    return block_id.partition(":")[2]
