"""How long a grant lasts: DEFAULT_ACCESS_DURATION, MAX_ACCESS_DURATION and the choices people get."""

from __future__ import annotations

from datetime import timedelta
from enum import Enum

from bot.core.config import Settings
from bot.core.durations import format_duration

# What the forms and the approver's select offer, before MAX_ACCESS_DURATION trims them.
PRESETS = (
    timedelta(hours=8),
    timedelta(days=1),
    timedelta(days=3),
    timedelta(weeks=1),
    timedelta(weeks=2),
    timedelta(days=30),
    timedelta(days=90),
)


# Passed for a duration nobody chose (no select on the form): the request's own applies.
KEEP_REQUESTED = -1


class DurationRefused(ValueError):
    """A duration longer than MAX_ACCESS_DURATION; the message is for the person who asked."""


class UseDefault(Enum):
    """No duration was named: DEFAULT_ACCESS_DURATION applies (else MAX_ACCESS_DURATION, else permanent)."""

    TOKEN = "default"


DEFAULT = UseDefault.TOKEN
Requested = timedelta | None | UseDefault


def effective_duration(requested: Requested, settings: Settings) -> timedelta | None:
    """The duration a request gets (None: permanent). With a maximum set, nothing is permanent."""
    longest = settings.max_access_duration
    if requested is DEFAULT:
        duration = settings.default_access_duration or longest
    elif requested is None:
        if longest is not None:
            raise DurationRefused(f"Access here is never permanent; the longest grant is {format_duration(longest)}.")
        return None
    else:
        duration = requested
    if duration is not None and longest is not None and duration > longest:
        raise DurationRefused(
            f"{format_duration(duration)} is longer than the longest grant allowed here ({format_duration(longest)})."
        )
    return duration


def permanent_allowed(settings: Settings) -> bool:
    return settings.max_access_duration is None


def duration_choices(settings: Settings, preset: timedelta | None = None) -> list[timedelta | None]:
    """Presets within the maximum, "permanent" (None) where allowed, and `preset` always among them."""
    limit = settings.max_access_duration
    choices: list[timedelta | None] = [d for d in PRESETS if limit is None or d <= limit]
    if limit is not None and limit not in choices:
        choices.append(limit)
    if preset is not None and preset not in choices:
        choices.append(preset)
    choices.sort(key=lambda d: d.total_seconds() if d is not None else float("inf"))
    if permanent_allowed(settings):
        choices.append(None)
    return choices


def to_seconds(duration: timedelta | None) -> int | None:
    return int(duration.total_seconds()) if duration is not None else None


def from_seconds(seconds: int | None) -> timedelta | None:
    return timedelta(seconds=seconds) if seconds is not None else None
