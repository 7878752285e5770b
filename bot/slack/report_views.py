"""Block Kit for the access review: the scheduled digest message and the approvers' Home counts.

Slack refuses a whole message for one broken limit (over 50 blocks, a section text over 3,000
characters), so each account is one section with counts and the first few names per finding, and
accounts that do not fit are summed up in a last line pointing to the command that lists everyone.
Every name comes from Cloudflare and is escaped.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from slack_sdk.models.blocks import Block, ContextBlock, DividerBlock, HeaderBlock, MarkdownTextObject, SectionBlock

from bot.slack.formatting import escape, slack_date, truncate

MAX_MESSAGE_BLOCKS = 50
MAX_SECTION_TEXT = 3000
EXAMPLES = 3
_NAME_CHARS = 80
_ACCOUNT_CHARS = 200
REPORT_COMMAND = "cf-access-bot report"
MAX_HOME_ACCOUNTS = 10


@dataclass(frozen=True)
class FindingSummary:
    title: str
    count: int
    #: The first few names (e-mails); the digest shows them, Home only counts.
    examples: Sequence[str] = ()


@dataclass(frozen=True)
class AccountSummary:
    name: str
    members: int
    super_admins: int
    enforces_two_factor: bool
    findings: Sequence[FindingSummary]


def _section(text: str) -> SectionBlock:
    return SectionBlock(text=MarkdownTextObject(text=truncate(text, MAX_SECTION_TEXT)))


def _context(text: str) -> ContextBlock:
    return ContextBlock(elements=[MarkdownTextObject(text=truncate(text, MAX_SECTION_TEXT))])


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def account_heading(account: AccountSummary) -> str:
    enforced = " · 2FA required" if account.enforces_two_factor else ""
    return (
        f"*{escape(truncate(account.name, _ACCOUNT_CHARS))}* · {_plural(account.members, 'member')} · "
        f"{_plural(account.super_admins, 'Super Administrator')}{enforced}"
    )


def _finding_line(finding: FindingSummary, *, with_names: bool) -> str:
    line = f"• *{finding.count} {escape(finding.title)}*"
    if with_names and finding.examples:
        names = ", ".join(escape(truncate(name, _NAME_CHARS)) for name in finding.examples[:EXAMPLES])
        more = finding.count - min(len(finding.examples), EXAMPLES)
        line += f": {names}" + (f" and {more} more" if more > 0 else "")
    return line


def account_text(account: AccountSummary, *, with_names: bool) -> str:
    lines = [_finding_line(finding, with_names=with_names) for finding in account.findings if finding.count]
    return "\n".join([account_heading(account), *(lines or ["• nothing to review"])])


def digest_text(accounts: Sequence[AccountSummary]) -> str:
    """The notification and accessibility text: totals per finding across accounts."""
    totals: dict[str, int] = {}
    for account in accounts:
        for finding in account.findings:
            totals[finding.title] = totals.get(finding.title, 0) + finding.count
    found = [f"{count} {title}" for title, count in totals.items() if count]
    return f"Cloudflare access review of {_plural(len(accounts), 'account')}: " + (
        ", ".join(found) if found else "nothing to review"
    )


def digest_blocks(
    accounts: Sequence[AccountSummary], *, as_of: datetime, unreadable: Sequence[str] = ()
) -> list[Block]:
    """`unreadable`: accounts whose members Cloudflare would not list this time."""
    blocks: list[Block] = [
        HeaderBlock(text="Cloudflare access review"),
        _context(f"{_plural(len(accounts), 'account')}, as of {slack_date(as_of)}."),
    ]
    if unreadable:
        names = ", ".join(escape(truncate(name, _ACCOUNT_CHARS)) for name in unreadable)
        blocks.append(_section(f":warning: Could not read the members of {names}; they are not in this digest."))
    room = MAX_MESSAGE_BLOCKS - len(blocks) - 1  # the closing line
    shown = accounts if len(accounts) <= room else accounts[: room - 1]
    blocks += [_section(account_text(account, with_names=True)) for account in shown]
    if len(shown) < len(accounts):
        blocks.append(_section(f"…and {_plural(len(accounts) - len(shown), 'more account')}."))
    blocks.append(
        _context(
            f"Every member with their access, who granted it, Slack status and 2FA: `{REPORT_COMMAND}` "
            f"(`--account ACCOUNT`, `--format csv` for a spreadsheet)."
        )
    )
    return blocks


def home_review_blocks(accounts: Sequence[AccountSummary], *, as_of: datetime | None) -> list[Block]:
    """The approver's counts on Home; nothing when they approve for no reviewed account."""
    if not accounts:
        return []
    shown = accounts[:MAX_HOME_ACCOUNTS]
    blocks: list[Block] = [DividerBlock(), HeaderBlock(text="Access review of the accounts you approve for")]
    blocks += [_section(account_text(account, with_names=False)) for account in shown]
    more = f" …and {_plural(len(accounts) - len(shown), 'more account')}." if len(accounts) > len(shown) else ""
    when = f"As of {slack_date(as_of)}." if as_of else ""
    blocks.append(_context(f"{when}{more} `{REPORT_COMMAND}` lists every member.".strip()))
    return blocks
