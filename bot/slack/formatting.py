"""Small text helpers shared by every message builder."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime


def escape(text: str) -> str:
    """Slack mrkdwn control characters, so user text cannot mention @channel or forge links."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def mention(user_id: str) -> str:
    return f"<@{user_id}>"


def mentions(user_ids: Iterable[str]) -> str:
    return ", ".join(mention(user_id) for user_id in user_ids)


def addressed(user_ids: Iterable[str], separator: str) -> str:
    """`@a, @b` and `separator` to open a message to them; nothing when there is no one to name."""
    named = mentions(user_ids)
    return f"{named}{separator}" if named else ""


def slack_date(moment: datetime) -> str:
    """Rendered by Slack in each reader's own time zone; the fallback is UTC."""
    fallback = moment.strftime("%Y-%m-%d %H:%M UTC")
    return f"<!date^{int(moment.timestamp())}^{{date_short_pretty}} at {{time}}|{fallback}>"


def number(request_id: int) -> str:
    return f"#{request_id}"


def role_list(names: Iterable[str]) -> str:
    """Plain text (the CLI's); in a Slack message use `shown_roles`."""
    return ", ".join(names) or "(none)"


def shown_roles(names: Iterable[str]) -> str:
    """Role names as Slack shows them: they come from Cloudflare, so they are escaped."""
    return escape(role_list(names))


def scope_label(zone_names: Iterable[str] | None) -> str:
    """Where a grant applies, plain (the CLI's): `whole account`, or the zones. In Slack use `scope_text`."""
    names = list(zone_names or [])
    if not names:
        return "whole account"
    return ("zone " if len(names) == 1 else "zones ") + ", ".join(names)


def scope_text(zone_names: Iterable[str] | None) -> str:
    """`scope_label` for Slack: zone names come from Cloudflare (or a user), so they are escaped."""
    return escape(scope_label(zone_names))


def truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
