"""Block Kit rules as Slack enforces them, for the fake Web API.

slack_sdk's models check most limits when the bot builds blocks, but not all (50 blocks per
message, unique ids, option descriptions, plain_text_input max_length, view size, a modal with
inputs and no submit), and nothing stops the bot from sending a hand-made dict. Each rule answers
with the error text Slack sends, pointing at the offending field like Slack's json-pointer.
"""

from __future__ import annotations

import json
from typing import Any

MAX_MESSAGE_BLOCKS = 50
MAX_VIEW_BLOCKS = 100
MAX_VIEW_BYTES = 250_000
_TEXT_LIMITS = {"section": 3000, "header": 150}
_ELEMENT_LIMITS = {"actions": 25, "context": 10}
_OPTION_TEXT = 75
_OPTION_VALUE = 150
_OPTION_DESCRIPTION = 75
_MAX_OPTIONS = 100
_SELECTS_WITH_OPTIONS = {"static_select", "multi_static_select", "radio_buttons", "checkboxes", "overflow"}
# Options come from the app's options load URL (`block_suggestion`), never from the element.
_EXTERNAL_SELECTS = {"external_select", "multi_external_select"}


def _text_of(obj: Any) -> str:
    return str(obj.get("text", "")) if isinstance(obj, dict) else ""


def block_errors(blocks: Any, *, where: str = "/blocks") -> list[str]:
    """Every way `blocks` breaks Slack's Block Kit rules (empty: Slack would take them)."""
    if not isinstance(blocks, list):
        return [f"must be an array [json-pointer:{where}]"]
    errors: list[str] = []
    block_ids: set[str] = set()
    for n, block in enumerate(blocks):
        at = f"{where}/{n}"
        if not isinstance(block, dict) or "type" not in block:
            errors.append(f"missing required field: type [json-pointer:{at}]")
            continue
        kind = block["type"]
        block_id = block.get("block_id")
        if block_id is not None:
            if len(str(block_id)) > 255:
                errors.append(f"must be less than 256 characters [json-pointer:{at}/block_id]")
            if block_id in block_ids:
                errors.append(f"duplicate block_id {block_id!r} [json-pointer:{at}/block_id]")
            block_ids.add(block_id)
        limit = _TEXT_LIMITS.get(kind)
        if limit and len(_text_of(block.get("text"))) > limit:
            errors.append(f"must be less than {limit + 1} characters [json-pointer:{at}/text/text]")
        if kind == "section":
            if "text" not in block and "fields" not in block:
                errors.append(f"must provide text or fields [json-pointer:{at}]")
            fields = block.get("fields") or []
            if len(fields) > 10:
                errors.append(f"must provide no more than 10 items [json-pointer:{at}/fields]")
            errors += [
                f"must be less than 2001 characters [json-pointer:{at}/fields/{i}/text]"
                for i, field in enumerate(fields)
                if len(_text_of(field)) > 2000
            ]
            if "accessory" in block:
                errors += _element_errors(block["accessory"], f"{at}/accessory")
        if kind in _ELEMENT_LIMITS:
            elements = block.get("elements") or []
            if not elements:
                errors.append(f"must provide at least 1 item [json-pointer:{at}/elements]")
            if len(elements) > _ELEMENT_LIMITS[kind]:
                errors.append(f"must provide no more than {_ELEMENT_LIMITS[kind]} items [json-pointer:{at}/elements]")
            if kind == "actions":
                action_ids = [e.get("action_id") for e in elements if isinstance(e, dict) and e.get("action_id")]
                if len(action_ids) != len(set(action_ids)):
                    errors.append(f"duplicate action_id in one block [json-pointer:{at}/elements]")
                for i, element in enumerate(elements):
                    errors += _element_errors(element, f"{at}/elements/{i}")
        if kind == "input":
            label = _text_of(block.get("label"))
            if not label:
                errors.append(f"missing required field: label [json-pointer:{at}/label]")
            if len(label) > 2000:
                errors.append(f"must be less than 2001 characters [json-pointer:{at}/label/text]")
            if "element" not in block:
                errors.append(f"missing required field: element [json-pointer:{at}/element]")
            else:
                errors += _element_errors(block["element"], f"{at}/element")
    return errors


def _element_errors(element: Any, at: str) -> list[str]:
    if not isinstance(element, dict):
        return [f"must be an object [json-pointer:{at}]"]
    errors: list[str] = []
    kind = element.get("type")
    if len(str(element.get("action_id", ""))) > 255:
        errors.append(f"must be less than 256 characters [json-pointer:{at}/action_id]")
    if kind == "button":
        if len(_text_of(element.get("text"))) > 75:
            errors.append(f"must be less than 76 characters [json-pointer:{at}/text/text]")
        if len(str(element.get("value", ""))) > 2000:
            errors.append(f"must be less than 2001 characters [json-pointer:{at}/value]")
    if kind == "plain_text_input" and int(element.get("max_length") or 0) > 3000:
        errors.append(f"must be less than or equal to 3000 [json-pointer:{at}/max_length]")
    if kind in _SELECTS_WITH_OPTIONS:
        options = list(element.get("options") or [])
        for group in element.get("option_groups") or []:
            options += group.get("options") or []
        if not options and "option_groups" not in element:
            errors.append(f"must provide at least 1 item [json-pointer:{at}/options]")
        if len(element.get("options") or []) > _MAX_OPTIONS:
            errors.append(f"must provide no more than {_MAX_OPTIONS} items [json-pointer:{at}/options]")
        for i, option in enumerate(options):
            errors += _option_errors(option, f"{at}/options/{i}")
        values = {option.get("value") for option in options}
        initial = list(element.get("initial_options") or [])
        if element.get("initial_option"):
            initial.append(element["initial_option"])
        if any(option.get("value") not in values for option in initial):
            errors.append(f"initial options must be among the options [json-pointer:{at}/initial_options]")
    if kind in _EXTERNAL_SELECTS:
        for field in ("options", "option_groups"):
            if field in element:
                errors.append(f"invalid additional property: {field} [json-pointer:{at}]")
        minimum = element.get("min_query_length", 3)
        if not isinstance(minimum, int) or minimum < 0:
            errors.append(f"must be a non-negative integer [json-pointer:{at}/min_query_length]")
        chosen = list(element.get("initial_options") or [])
        if element.get("initial_option"):
            chosen.append(element["initial_option"])
        for i, option in enumerate(chosen):
            errors += _option_errors(option, f"{at}/initial_options/{i}")
    most = element.get("max_selected_items", 1)
    if kind in ("multi_external_select", "multi_static_select") and (not isinstance(most, int) or most < 1):
        errors.append(f"must be at least 1 [json-pointer:{at}/max_selected_items]")
    return errors


def _option_errors(option: Any, at: str) -> list[str]:
    errors: list[str] = []
    if len(_text_of(option.get("text"))) > _OPTION_TEXT:
        errors.append(f"must be less than {_OPTION_TEXT + 1} characters [json-pointer:{at}/text/text]")
    if len(str(option.get("value", ""))) > _OPTION_VALUE:
        errors.append(f"must be less than {_OPTION_VALUE + 1} characters [json-pointer:{at}/value]")
    if len(_text_of(option.get("description"))) > _OPTION_DESCRIPTION:
        errors.append(f"must be less than {_OPTION_DESCRIPTION + 1} characters [json-pointer:{at}/description/text]")
    return errors


def message_errors(blocks: Any) -> list[str]:
    errors = block_errors(blocks or [])
    if isinstance(blocks, list) and len(blocks) > MAX_MESSAGE_BLOCKS:
        errors.insert(0, f"must provide no more than {MAX_MESSAGE_BLOCKS} items [json-pointer:/blocks]")
    return errors


def view_errors(view: Any) -> tuple[str, list[str]]:
    """(Slack's error code, details) for a view Slack would refuse; ("", []) when it would take it."""
    if not isinstance(view, dict):
        return "invalid_arguments", ["view must be an object"]
    if len(json.dumps(view)) > MAX_VIEW_BYTES:
        return "view_too_large", [f"view is over {MAX_VIEW_BYTES} bytes"]
    kind = view.get("type")
    blocks = view.get("blocks")
    errors: list[str] = []
    if kind not in ("modal", "home"):
        errors.append("type must be modal or home [json-pointer:/view/type]")
    if not isinstance(blocks, list) or not 1 <= len(blocks) <= MAX_VIEW_BLOCKS:
        count = len(blocks) if isinstance(blocks, list) else 0
        errors.append(f"{count} blocks; a view takes 1 to {MAX_VIEW_BLOCKS} [json-pointer:/view/blocks]")
    else:
        errors += block_errors(blocks, where="/view/blocks")
    if len(str(view.get("private_metadata", ""))) > 3000:
        errors.append("must be less than 3001 characters [json-pointer:/view/private_metadata]")
    if len(str(view.get("callback_id", ""))) > 255:
        errors.append("must be less than 256 characters [json-pointer:/view/callback_id]")
    for name in ("title", "submit", "close"):
        if name in view and len(_text_of(view[name])) > 24:
            errors.append(f"must be less than 25 characters [json-pointer:/view/{name}/text]")
    has_inputs = isinstance(blocks, list) and any(
        isinstance(block, dict) and block.get("type") == "input" for block in blocks
    )
    if kind == "modal":
        if not _text_of(view.get("title")):
            errors.append("missing required field: title [json-pointer:/view/title]")
        if has_inputs and "submit" not in view:
            errors.append("a view with input blocks must have a submit button [json-pointer:/view/submit]")
    if kind == "home" and ("submit" in view or "close" in view):
        errors.append("a home view takes no submit or close [json-pointer:/view]")
    return ("invalid_arguments", errors) if errors else ("", [])
