"""How people known only by e-mail stand in Slack, for the access review.

Slack's `users.lookupByEmail` answers `users_not_found` for a deactivated user exactly as for an
e-mail nobody in the workspace has (Slack documents this). So an e-mail not found whose Slack id the
bot knows (the person asked for access once) is read with `users.info`, which does say `deleted`;
any other e-mail not found stays `not found`. Each distinct e-mail costs one lookup per review,
whatever the number of accounts it appears in; a 429 is retried by the client's handler.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from slack_sdk.errors import SlackApiError

from bot.slack.gateway import SlackError, SlackGateway

log = logging.getLogger(__name__)

ACTIVE = "active"
DEACTIVATED = "deactivated"
GUEST = "guest"
NOT_FOUND = "not found"
UNKNOWN = "unknown"  # Slack could not be asked (an error other than "not found")
_NOT_FOUND_ERRORS = ("users_not_found", "user_not_found")


@dataclass(frozen=True)
class SlackPerson:
    status: str
    user_id: str | None = None


def _status_of(user: dict[str, Any]) -> str:
    if user.get("deleted"):
        return DEACTIVATED
    if user.get("is_restricted") or user.get("is_ultra_restricted") or user.get("is_stranger"):
        return GUEST
    return ACTIVE


class SlackPeople:
    """One review's Slack look-ups, cached by e-mail (case-insensitive)."""

    def __init__(self, gateway: SlackGateway) -> None:
        self._gateway = gateway
        self._known: dict[str, str] = {}
        self._found: dict[str, SlackPerson] = {}
        self.lookups = 0

    def know(self, email: str, user_id: str) -> None:
        """The Slack id the bot has seen with this e-mail (a requester's), to tell deactivated from unknown."""
        if email:
            self._known.setdefault(email.lower(), user_id)

    def find(self, email: str) -> SlackPerson:
        key = email.lower()
        if not key:
            return SlackPerson(NOT_FOUND)
        cached = self._found.get(key)
        if cached is None:
            cached = self._found[key] = self._look_up(key)
        return cached

    def _look_up(self, email: str) -> SlackPerson:
        self.lookups += 1
        try:
            user = self._gateway.client.users_lookupByEmail(email=email)["user"]
            return SlackPerson(_status_of(user), str(user.get("id") or "") or None)
        except SlackApiError as error:
            code = str(error.response.get("error") or "")
            if code not in _NOT_FOUND_ERRORS:
                log.warning("could not look %s up in Slack: %s", email, code or "unknown_error")
                return SlackPerson(UNKNOWN)
        known = self._known.get(email)
        if known is None:
            return SlackPerson(NOT_FOUND)
        try:
            profile = self._gateway.profile(known)
        except SlackError as error:
            if error.code in _NOT_FOUND_ERRORS:
                return SlackPerson(NOT_FOUND)
            log.warning("could not read Slack user %s: %s", known, error.code)
            return SlackPerson(UNKNOWN)
        # The id is the one this e-mail asked for access with; a profile showing another e-mail is someone else now.
        if profile.deleted and (not profile.email or profile.email.lower() == email):
            return SlackPerson(DEACTIVATED, known)
        return SlackPerson(NOT_FOUND)
