"""Reading the parts of Slack interaction payloads the listeners need, validated."""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ValidationError

from bot.ids import Block, suffix_of


class DecisionClick(BaseModel):
    request_id: int
    user_id: str
    granted_role_ids: list[str]


def _state_values(body: dict[str, Any]) -> dict[str, Any]:
    """Message clicks carry `state`; clicks in a modal or the Home tab carry `view.state`."""
    values = (body.get("state") or {}).get("values")
    if values is None:
        values = ((body.get("view") or {}).get("state") or {}).get("values")
    return values or {}


def decision_click(body: dict[str, Any]) -> DecisionClick | None:
    try:
        action = body["actions"][0]
        request_id = int(action["value"])
        granted: list[str] = []
        grant_block = f"{Block.GRANT.value}:{request_id}"
        for element in _state_values(body).get(grant_block, {}).values():
            granted = [option["value"] for option in element.get("selected_options") or []]
        return DecisionClick(request_id=request_id, user_id=body["user"]["id"], granted_role_ids=granted)
    except (KeyError, IndexError, TypeError, ValueError, ValidationError):
        return None


class RequestForm(BaseModel):
    account_id: str | None
    roles_block_id: str | None
    role_ids: list[str]
    reason: str


def request_form(view: dict[str, Any]) -> RequestForm:
    values = (view.get("state") or {}).get("values") or {}
    account = next(iter(values.get(Block.ACCOUNT.value, {}).values()), {})
    account_id = (account.get("selected_option") or {}).get("value")
    roles_block_id = next((block_id for block_id in values if block_id.startswith(f"{Block.ROLES.value}:")), None)
    role_ids: list[str] = []
    if roles_block_id and (account_id is None or suffix_of(roles_block_id) == account_id):
        element = next(iter(values[roles_block_id].values()), {})
        role_ids = [option["value"] for option in element.get("selected_options") or []]
    reason = next(iter(values.get(Block.REASON.value, {}).values()), {}).get("value") or ""
    return RequestForm(account_id=account_id, roles_block_id=roles_block_id, role_ids=role_ids, reason=reason)


def private_metadata(view: dict[str, Any]) -> dict[str, str]:
    try:
        loaded = json.loads(view.get("private_metadata") or "{}")
    except ValueError:
        return {}
    return {str(k): str(v) for k, v in loaded.items()} if isinstance(loaded, dict) else {}


def deny_reason(view: dict[str, Any]) -> str | None:
    values = (view.get("state") or {}).get("values") or {}
    element = next(iter(values.get(Block.DENY_REASON.value, {}).values()), {})
    value = element.get("value")
    return str(value) if value else None
