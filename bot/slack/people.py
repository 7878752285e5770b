"""How people known only by e-mail stand in Slack, for the access review.

Two ways to ask, and each review takes the cheaper as it goes:
- `users.list` pages through the whole workspace (Tier 2, about 20 pages a minute, 200 users a
  page), deactivated people included, so a walk also tells deactivated from unknown;
- `users.lookupByEmail` asks for one e-mail (Tier 3, about 50 a minute). It answers
  `users_not_found` for a deactivated user exactly as for an e-mail nobody in the workspace has
  (Slack documents this), so an e-mail not found whose Slack id the bot knows (the person asked for
  access once) is read with `users.info`, which does say `deleted`.

A page costs what PAGE_WORTH look-ups cost, so the walk goes on while its pages find at least that
many of the e-mails still wanted, on average (after a little leeway for a poor start), and the rest
are looked up one by one: a large account in any workspace is walked, a few e-mails in a large
workspace are looked up after one page. People Slack knows only through a shared channel (Slack
Connect) are in no workspace list: after a whole walk they read as not found. Each distinct e-mail is
asked once per review, whatever the number of accounts it appears in; a 429 is retried by the
client's handler, and a walk that fails leaves the rest to look-ups.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from slack_sdk.errors import SlackApiError

from bot.slack.gateway import NO_ANSWER, SlackError, SlackGateway

log = logging.getLogger(__name__)

ACTIVE = "active"
DEACTIVATED = "deactivated"
GUEST = "guest"
NOT_FOUND = "not found"
UNKNOWN = "unknown"  # Slack could not be asked (an error other than "not found")
_NOT_FOUND_ERRORS = ("users_not_found", "user_not_found")
#: One users.list page (Tier 2) costs what this many users.lookupByEmail (Tier 3) cost: 50 / 20 a minute.
PAGE_WORTH = 2.5
#: Users asked for a page: what Slack recommends ("no more than 200 results at a time").
PAGE_SIZE = 200
#: At most this many look-ups' worth of pages (three) may go before the walk has found anything.
EXPLORATION = 3 * PAGE_WORTH


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
        #: Everyone the walk has listed so far, by e-mail.
        self._listed: dict[str, SlackPerson] = {}
        self._cursor: str | None = None
        #: The walk reached the last page: an e-mail it did not list is in no profile of the workspace.
        self._walked = False
        self._walk_failed = False
        #: Slack gave no answer once: the rest of this review does not ask again (each call would
        #: wait out its retries and timeouts, holding up the sweep the digest runs in).
        self._unanswered = False
        #: E-mails answered from the walk (a later page may still hold a live account for one).
        self._from_walk: set[str] = set()
        self.lookups = 0
        self.pages = 0

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
            cached = self._found[key] = SlackPerson(UNKNOWN) if self._unanswered else self._look_up(key)
        return cached

    def answered(self, email: str) -> bool:
        """Whether `find` answers `email` without asking Slack."""
        return email.lower() in self._found

    def prefetch(self, emails: Iterable[str]) -> None:
        """Answer what the walk of `users.list` can for `emails`, going on while it pays (see the
        module's docstring); `find` looks the rest up.

        A page may hold fewer people than asked, even none, and Slack lists in no useful order, so
        one poor page proves little when many e-mails are wanted: the walk may run up to
        EXPLORATION look-ups' worth of pages ahead of what it has found (a quarter of the e-mails
        wanted, at least one page), then goes on while its pages have found PAGE_WORTH each."""
        wanted = {email.lower() for email in emails if email} - self._found.keys()
        self._take_listed(wanted)
        if len(wanted) < PAGE_WORTH:
            return
        allowance = min(max(len(wanted) / 4, PAGE_WORTH), EXPLORATION)
        pages = found = 0
        while wanted and not self._walked and not self._walk_failed and PAGE_WORTH * (pages + 1) <= found + allowance:
            if not self._walk_one_page():
                break
            pages += 1
            found += self._take_listed(wanted)
        if self._walked:
            for email in sorted(wanted):
                self._found[email] = self._unlisted(email)

    def _take_listed(self, wanted: set[str]) -> int:
        """Move the wanted e-mails the walk has listed into the answers; how many it moved."""
        listed = wanted & self._listed.keys()
        for email in listed:
            self._found[email] = self._listed[email]
        self._from_walk |= listed
        wanted -= listed
        return len(listed)

    def _walk_one_page(self) -> bool:
        try:
            members, self._cursor = self._gateway.users_page(self._cursor, limit=PAGE_SIZE)
        except SlackError as error:
            log.warning("could not list Slack's users (%s); looking the rest up one by one", error.code)
            self._walk_failed = True
            return False
        except NO_ANSWER as error:
            log.warning("Slack did not answer users.list (%s); the rest read unknown", type(error).__name__)
            self._walk_failed = self._unanswered = True
            return False
        self.pages += 1
        for user in members:
            email = str((user.get("profile") or {}).get("email") or "").lower()
            if not email:
                continue
            person = SlackPerson(_status_of(user), str(user.get("id") or "") or None)
            # An e-mail held by a deactivated account and a live one is the live one's, as a look-up answers.
            if email not in self._listed or self._listed[email].status == DEACTIVATED:
                self._listed[email] = person
                if email in self._from_walk:  # answered from an earlier page: this one is the answer now
                    self._found[email] = person
        self._walked = self._cursor is None
        return True

    def _unlisted(self, email: str) -> SlackPerson:
        """After a whole walk: an e-mail no profile holds. A deactivated person's profile may come
        without it; the Slack id the bot knows for the e-mail tells."""
        known = self._known.get(email)
        return self._by_known_id(email, known) if known is not None else SlackPerson(NOT_FOUND)

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
        except NO_ANSWER as error:  # the report goes on; the rest are not asked
            log.warning(
                "Slack did not answer the look-up of %s (%s); the rest read unknown", email, type(error).__name__
            )
            self._unanswered = True
            return SlackPerson(UNKNOWN)
        known = self._known.get(email)
        if known is None:
            return SlackPerson(NOT_FOUND)
        return self._by_known_id(email, known)

    def _by_known_id(self, email: str, known: str) -> SlackPerson:
        try:
            profile = self._gateway.profile(known)
        except SlackError as error:
            if error.code in _NOT_FOUND_ERRORS:
                return SlackPerson(NOT_FOUND)
            log.warning("could not read Slack user %s: %s", known, error.code)
            return SlackPerson(UNKNOWN)
        except NO_ANSWER as error:
            log.warning("Slack did not answer for user %s (%s); the rest read unknown", known, type(error).__name__)
            self._unanswered = True
            return SlackPerson(UNKNOWN)
        # The id is the one this e-mail asked for access with; a profile showing another e-mail is someone else now.
        if profile.deleted and (not profile.email or profile.email.lower() == email):
            return SlackPerson(DEACTIVATED, known)
        return SlackPerson(NOT_FOUND)
