"""Block Kit validation at a fraction of its cost: the same validators, found once per class.

slack_sdk's `JsonObject.validate_json` (run by every `to_dict()`, for every block, element and
text object) walks `dir(self)` and reads every attribute to find the `@JsonValidator` methods:
most of the CPU of serialising a message or a Home tab. The validators of a class never change,
so they are listed once per class here and run exactly as before (same methods, same errors).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from slack_sdk.models.basic_objects import JsonObject

_validators: dict[type, tuple[str, ...]] = {}
_lock = threading.Lock()
_original: Callable[[Any], None] | None = None


def _validator_names(cls: type) -> tuple[str, ...]:
    names = _validators.get(cls)
    if names is None:
        names = tuple(
            name
            for name in dir(cls)
            if not name.startswith("__")
            and callable(method := getattr(cls, name, None))
            and hasattr(method, "validator")
        )
        with _lock:
            _validators[cls] = names
    return names


def _validate_json(self: JsonObject) -> None:
    """Validate this object against its attribute validators (SlackObjectFormationError if not valid)."""
    for name in _validator_names(type(self)):
        getattr(self, name)()


def cache_block_kit_validators() -> None:
    """Install the per-class cache (idempotent; for the whole process)."""
    global _original
    if _original is None:
        _original = JsonObject.validate_json
        JsonObject.validate_json = _validate_json  # type: ignore[method-assign]
