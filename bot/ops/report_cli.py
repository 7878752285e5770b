"""`cf-access-bot report`: the access review as a table ending with the findings, JSON lines, or CSV.

Rows are written account by account as each is reviewed; progress for large accounts goes to
stderr, so stdout stays one clean table, JSON object per line, or CSV document. The counts are
also stored for the approvers' Home tab.
"""

from __future__ import annotations

import csv
import json
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import IO, Any

from bot.access.matching import resolve
from bot.access.report import AccessReport, AccountReview, ReportRow
from bot.access.review_summary import save_reviews
from bot.access.services import Services
from bot.cloudflare.errors import CloudflareError
from bot.cloudflare.models import Account
from bot.core.config import ConfigError
from bot.ops.export import _csv_safe, _iso

REPORT_COLUMNS = [
    "account",
    "account_id",
    "email",
    "status",
    "access",
    "granted_by",
    "access_ends_at",
    "slack_status",
    "two_factor",
]
_TABLE = [("account", 20), ("email", 32), ("status", 9), ("access", 32), ("granted_by", 14), ("access_ends_at", 20)]
_TABLE += [("slack_status", 12), ("two_factor", 10)]


def row_record(row: ReportRow) -> dict[str, Any]:
    return {
        "account": row.account,
        "account_id": row.account_id,
        "email": row.email,
        "status": row.status,
        "access": list(row.access),
        "granted_by": list(row.granted_by),
        "access_ends_at": _iso(row.access_ends_at),
        "slack_status": row.slack_status,
        "two_factor": row.two_factor,
    }


def _text(value: Any, *, yes: str = "true", no: str = "false") -> str:
    if isinstance(value, list):
        return ", ".join(str(item) for item in value)
    if isinstance(value, bool):
        return yes if value else no
    return "" if value is None else str(value)


class _Writer(ABC):
    def __init__(self, out: IO[str]) -> None:
        self.out = out

    def begin(self) -> None:  # noqa: B027  (an optional hook: most formats start with nothing)
        pass

    @abstractmethod
    def rows(self, review: AccountReview) -> None: ...

    def end(self, reviews: Sequence[AccountReview]) -> None:  # noqa: B027  (an optional hook)
        pass


class _JsonLines(_Writer):
    def rows(self, review: AccountReview) -> None:
        for row in review.rows:
            self.out.write(json.dumps(row_record(row), ensure_ascii=False) + "\n")


class _Csv(_Writer):
    def __init__(self, out: IO[str]) -> None:
        super().__init__(out)
        self.writer = csv.writer(out)

    def begin(self) -> None:
        self.writer.writerow(REPORT_COLUMNS)

    def rows(self, review: AccountReview) -> None:
        for row in review.rows:
            record = row_record(row)
            # Every cell: e-mails and role names come from people and Cloudflare, not from us.
            self.writer.writerow([_csv_safe(_text(record[column])) for column in REPORT_COLUMNS])


class _Table(_Writer):
    def begin(self) -> None:
        self._line([name.upper() for name, _ in _TABLE])

    def _line(self, cells: Sequence[str]) -> None:
        fitted = [
            cell if len(cell) <= width else cell[: width - 1] + "…"
            for cell, (_, width) in zip(cells, _TABLE, strict=True)
        ]
        self.out.write("  ".join(c.ljust(w) for c, (_, w) in zip(fitted, _TABLE, strict=True)).rstrip() + "\n")

    def rows(self, review: AccountReview) -> None:
        for row in review.rows:
            record = row_record(row)
            record["email"] = record["email"] or f"(no e-mail, member {row.member_id})"
            self._line([_text(record[name], yes="yes", no="no") or "-" for name, _ in _TABLE])

    def end(self, reviews: Sequence[AccountReview]) -> None:
        write_findings(reviews, self.out)


def write_findings(reviews: Sequence[AccountReview], out: IO[str]) -> None:
    out.write("\nFINDINGS\n")
    for review in reviews:
        admins = len(review.super_admins)
        out.write(
            f"\n{review.account_name} ({review.account_id}): {review.member_count} members, "
            f"{admins} Super Administrator{'' if admins == 1 else 's'}"
            + (f" ({', '.join(review.super_admins)})" if review.super_admins else "")
            + ("; the account requires 2FA" if review.enforces_two_factor else "")
            + "\n"
        )
        for finding in review.findings:
            out.write(f"  {finding.title}: {finding.count or 'none'}\n")
            for entry in finding.entries:
                out.write(f"    {entry}\n")


WRITERS: dict[str, type[_Writer]] = {"table": _Table, "json": _JsonLines, "csv": _Csv}


def select_accounts(accounts: Sequence[Account], wanted: str | None) -> list[Account]:
    """Every requestable account, or the one `--account` names (id, exact name, or unique prefix)."""
    if not wanted:
        return list(accounts)
    found = resolve(wanted, accounts, key=lambda account: account.id, name=lambda account: account.label)
    if found.match is None:
        names = ", ".join(account.label for account in (found.candidates or accounts))
        which = "matches several" if found.ambiguous else "matches no"
        raise ConfigError(f"--account '{wanted}' {which} requestable account (accounts: {names})")
    return [found.match]


def run_report(services: Services, *, account: str | None, fmt: str, out: IO[str], err: IO[str]) -> int:
    """Exit status: 0, or 1 when an account could not be read (the others are still reported)."""
    report = AccessReport(services, progress=lambda line: print(line, file=err, flush=True))
    try:
        accounts = select_accounts(report.accounts(), account)
    except CloudflareError as error:
        print(f"cf-access-bot: could not list the requestable accounts: {error}", file=err)
        return 1
    writer = WRITERS[fmt](out)
    writer.begin()
    reviews: list[AccountReview] = []
    unreadable = 0
    for chosen in accounts:
        try:
            review = report.review(chosen)
        except CloudflareError as error:
            print(f"cf-access-bot: could not read the members of {chosen.label}: {error}", file=err)
            unreadable += 1
            continue
        writer.rows(review)
        out.flush()
        reviews.append(review)
    writer.end(reviews)
    with services.db.session() as session:
        save_reviews(session, reviews, computed_at=services.clock.now(), replace=not account and not unreadable)
    return 1 if unreadable else 0
