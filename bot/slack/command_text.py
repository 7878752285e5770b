"""Parsing the text after `/cf-access` into a subcommand and its arguments."""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field

from bot.slack.formatting import escape

USAGE = """*`/cf-access`*: ask for access to a Cloudflare account; its Super Administrators approve in Slack.
• `/cf-access` or `/cf-access request`: open the request form
• `/cf-access request ACCOUNT ROLE[,ROLE...] [on ZONE[,ZONE...]] [for DURATION] REASON`: file a request directly, e.g. `/cf-access request "Orange Cloud" DNS,Billing for 3d rotate the zone's records`, or zone-scoped: `/cf-access request "Orange Cloud" "Domain DNS" on example.com for 8h fix a record` (DURATION: `8h`, `3d`, `2w`; zones need an account on Cloudflare's permission policies)
• `/cf-access accounts`: the accounts you can request
• `/cf-access roles ACCOUNT`: the roles (or permission groups) you can request on an account
• `/cf-access status`: your requests and their state
• `/cf-access pending`: requests waiting for your decision (approvers)
• `/cf-access cancel ID`: withdraw one of your pending requests (`cancel 42` or `cancel #42`)
• `/cf-access help`: this message
ACCOUNT and ROLE take an id, a full name or a unique start of a name; quote names with spaces."""


_QUOTES = {'"': '"', "'": "'", "\u201c": "\u201d", "\u2018": "\u2019"}


class UnclosedQuote(ValueError):
    pass


def split_words(text: str, count: int) -> tuple[list[str], str]:
    """Take up to `count` shell-style words (quotes group spaces) and return the untouched rest.

    The rest (a request's reason) is kept verbatim, so apostrophes in "can't" need no quoting.
    """
    words: list[str] = []
    position = 0
    while len(words) < count:
        while position < len(text) and text[position].isspace():
            position += 1
        if position >= len(text):
            break
        opening = text[position]
        if opening in _QUOTES:
            closing = text.find(_QUOTES[opening], position + 1)
            if closing < 0:
                raise UnclosedQuote(text[position:])
            words.append(text[position + 1 : closing])
            position = closing + 1
        else:
            end = position
            while end < len(text) and not text[end].isspace():
                end += 1
            words.append(text[position:end])
            position = end
    return words, text[position:].strip()


@dataclass(frozen=True)
class ParsedCommand:
    name: str
    args: list[str] = field(default_factory=list)
    rest: str = ""
    error: str | None = None


_ARGUMENT_WORDS = {"request": 2, "roles": 1, "cancel": 1}


def parse_command(text: str) -> ParsedCommand:
    text = html.unescape(text or "").strip()
    if not text:
        return ParsedCommand("request")
    first, rest = split_words(text, 1)
    name = first[0].lower()
    if name not in {"request", "accounts", "roles", "status", "pending", "cancel", "help"}:
        return ParsedCommand("help", error=f"`{escape(first[0])}` is not a /cf-access command.")
    try:
        args, rest = split_words(rest, _ARGUMENT_WORDS.get(name, 0))
    except UnclosedQuote:
        return ParsedCommand("help", error='A quote is not closed. Quote names with spaces like "Orange Cloud".')
    return ParsedCommand(name, args, rest)


@dataclass(frozen=True)
class RequestTail:
    """What follows ACCOUNT ROLE in a quick request: optional `on ZONE[,ZONE]`, `for DURATION`, the reason."""

    zones: list[str]
    duration: str | None
    reason: str


def _looks_like_duration(word: str) -> bool:
    return bool(re.fullmatch(r"\d{1,9}[smhdwSMHDW]", word))


def parse_request_tail(rest: str) -> RequestTail:
    """`on` counts only before something with a dot (a zone), `for` only before a duration;
    otherwise both are words of the reason ("for the audit", "on call")."""
    zones: list[str] = []
    duration: str | None = None
    while True:
        words = rest.split(maxsplit=2)
        if len(words) >= 2 and words[0].lower() == "on" and not zones and "." in words[1]:
            zones = [zone.strip().lower().rstrip(".") for zone in words[1].split(",") if zone.strip()]
        elif len(words) >= 2 and words[0].lower() == "for" and duration is None and _looks_like_duration(words[1]):
            duration = words[1]
        else:
            return RequestTail(zones, duration, rest)
        rest = words[2] if len(words) > 2 else ""


def parse_request_id(text: str) -> int | None:
    text = text.strip().removeprefix("#")
    return int(text) if text.isdigit() and 0 < int(text) < 2**31 else None
