"""Reading the parts of Slack interaction payloads the listeners need, validated."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from pydantic import BaseModel, ValidationError

from bot.access.terms import DEFAULT, KEEP_REQUESTED, Requested
from bot.slack.ids import Block, suffix_of

# A duration select's value: seconds, or "permanent"; `NOT_CHOSEN` when the select is absent.
NOT_CHOSEN = KEEP_REQUESTED


def _duration_value(selected: Any) -> int | None:
    value = str((selected or {}).get("value") or "")
    if value == "permanent":
        return None
    return int(value) if value.isdigit() and 0 < int(value) < 10**9 else NOT_CHOSEN


def form_duration(duration_s: int | None) -> Requested:
    """A form's duration select: not there means the default; "permanent" is None."""
    if duration_s == NOT_CHOSEN:
        return DEFAULT
    return timedelta(seconds=duration_s) if duration_s is not None else None


class DecisionClick(BaseModel):
    request_id: int
    user_id: str
    granted_role_ids: list[str]
    #: Seconds chosen in the root's duration select; None = permanent; NOT_CHOSEN when absent.
    granted_duration_s: int | None = NOT_CHOSEN


def _state_values(body: dict[str, Any]) -> dict[str, Any]:
    """Message clicks carry `state`; clicks in a modal or the Home tab carry `view.state`."""
    values = (body.get("state") or {}).get("values")
    if values is None:
        values = ((body.get("view") or {}).get("state") or {}).get("values")
    return values or {}


def click_parts(body: dict[str, Any]) -> dict[str, Any]:
    """What `decision_click` reads of a payload: the button, who clicked, the pickers' state (not
    the message the payload also carries, or the rest of the view a Home tab click carries). Read
    nothing yet: this runs before the ack, and an odd payload is answered after it."""
    view = body.get("view")
    return {
        "actions": body.get("actions"),
        "user": body.get("user"),
        "state": body.get("state"),
        "view": {"state": view.get("state")} if isinstance(view, dict) else None,
    }


def decision_click(body: dict[str, Any]) -> DecisionClick | None:
    try:
        action = body["actions"][0]
        request_id = int(action["value"])
        granted: list[str] = []
        grant_block = f"{Block.GRANT.value}:{request_id}"
        for element in _state_values(body).get(grant_block, {}).values():
            granted = [option["value"] for option in element.get("selected_options") or []]
        duration: int | None = NOT_CHOSEN
        for element in _state_values(body).get(f"{Block.DURATION.value}:{request_id}", {}).values():
            duration = _duration_value(element.get("selected_option"))
        return DecisionClick(
            request_id=request_id, user_id=body["user"]["id"], granted_role_ids=granted, granted_duration_s=duration
        )
    except (KeyError, IndexError, TypeError, ValueError, AttributeError, ValidationError):
        return None


class RequestForm(BaseModel):
    account_id: str | None
    roles_block_id: str | None
    role_ids: list[str]
    reason: str
    duration_s: int | None = NOT_CHOSEN
    zones_block_id: str | None = None
    #: The zones chosen (ids; names are looked up again, never taken from the payload).
    zone_ids: list[str] = []


def _view_values(view: dict[str, Any]) -> dict[str, dict[str, Any]]:
    values: dict[str, dict[str, Any]] = (view.get("state") or {}).get("values") or {}
    return values


def _element(values: dict[str, dict[str, Any]], block_id: str) -> dict[str, Any]:
    """The state of the single input in `block_id` (empty when the block is absent)."""
    element: dict[str, Any] = next(iter(values.get(block_id, {}).values()), {})
    return element


def request_form(view: dict[str, Any]) -> RequestForm:
    values = _view_values(view)
    account_id = (_element(values, Block.ACCOUNT.value).get("selected_option") or {}).get("value")
    roles_block_id = next((block_id for block_id in values if block_id.startswith(f"{Block.ROLES.value}:")), None)
    role_ids: list[str] = []
    if roles_block_id and (account_id is None or suffix_of(roles_block_id) == account_id):
        role_ids = [option["value"] for option in _element(values, roles_block_id).get("selected_options") or []]
    zones_block_id = next((block_id for block_id in values if block_id.startswith(f"{Block.ZONES.value}:")), None)
    zone_ids: list[str] = []
    if zones_block_id and (account_id is None or suffix_of(zones_block_id) == account_id):
        zone_ids = [option["value"] for option in _element(values, zones_block_id).get("selected_options") or []]
    reason = _element(values, Block.REASON.value).get("value") or ""
    duration = _duration_value(_element(values, Block.DURATION.value).get("selected_option"))
    return RequestForm(
        account_id=account_id,
        roles_block_id=roles_block_id,
        role_ids=role_ids,
        reason=reason,
        duration_s=duration,
        zones_block_id=zones_block_id,
        zone_ids=zone_ids,
    )


class ZoneQuery(BaseModel):
    """A `block_suggestion` from the form's zone search: which account, and what was typed."""

    account_id: str
    typed: str


def zone_query(body: dict[str, Any]) -> ZoneQuery | None:
    block_id = str(body.get("block_id") or "")
    if not block_id.startswith(f"{Block.ZONES.value}:") or not suffix_of(block_id):
        return None
    return ZoneQuery(account_id=suffix_of(block_id), typed=str(body.get("value") or ""))


def private_metadata(view: dict[str, Any]) -> dict[str, str]:
    try:
        loaded = json.loads(view.get("private_metadata") or "{}")
    except ValueError:
        return {}
    return {str(k): str(v) for k, v in loaded.items()} if isinstance(loaded, dict) else {}


def revoke_reason(view: dict[str, Any]) -> str | None:
    value = _element(_view_values(view), Block.REVOKE_REASON.value).get("value")
    return str(value) if value else None


class ExtensionForm(BaseModel):
    request_id: int
    duration_s: int | None
    reason: str


def extension_form(view: dict[str, Any]) -> ExtensionForm | None:
    values = _view_values(view)
    try:
        request_id = int(private_metadata(view).get("request_id", "0"))
    except ValueError:
        return None
    duration = _duration_value(_element(values, Block.DURATION.value).get("selected_option"))
    reason = _element(values, Block.REASON.value).get("value") or ""
    return ExtensionForm(request_id=request_id, duration_s=duration, reason=reason) if request_id > 0 else None


def deny_reason(view: dict[str, Any]) -> str | None:
    value = _element(_view_values(view), Block.DENY_REASON.value).get("value")
    return str(value) if value else None
