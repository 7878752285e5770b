"""The last access review's counts per account, kept in `scheduled_runs` for the approvers' Home tab.

A review costs a member walk per account and a Slack look-up per e-mail, far too much for every
Home tab opened; so the digest (and `cf-access-bot report`) store what they counted, with the Slack
ids of each account's approvers at that time, and Home shows those counts with their date.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from bot.access.report import AccountReview
from bot.slack.report_views import EXAMPLES, AccountSummary, FindingSummary
from storage.scheduled_runs import get_run, save_result

REVIEW_RESULTS = "access_review"


def summary_of(review: AccountReview) -> AccountSummary:
    return AccountSummary(
        name=review.account_name,
        members=review.member_count,
        super_admins=len(review.super_admins),
        enforces_two_factor=review.enforces_two_factor,
        findings=[
            FindingSummary(finding.title, finding.count, finding.entries[:EXAMPLES]) for finding in review.findings
        ],
    )


def _record(review: AccountReview, computed_at: datetime) -> dict[str, Any]:
    return {
        "name": review.account_name,
        "computed_at": computed_at.isoformat(),
        "members": review.member_count,
        "super_admins": len(review.super_admins),
        "enforces_two_factor": review.enforces_two_factor,
        "approvers": list(review.approvers),
        "findings": [{"key": f.key, "title": f.title, "count": f.count} for f in review.findings],
    }


def save_reviews(session: Session, reviews: Iterable[AccountReview], *, computed_at: datetime, replace: bool) -> None:
    """`replace`: the reviews cover every requestable account (accounts no longer listed are dropped)."""
    run = get_run(session, REVIEW_RESULTS)
    kept: dict[str, Any] = {} if replace or run is None or not run.result else dict(run.result.get("accounts") or {})
    kept.update({review.account_id: _record(review, computed_at) for review in reviews})
    save_result(session, REVIEW_RESULTS, {"accounts": kept})


def _summary(record: dict[str, Any]) -> AccountSummary:
    return AccountSummary(
        name=str(record.get("name") or ""),
        members=int(record.get("members") or 0),
        super_admins=int(record.get("super_admins") or 0),
        enforces_two_factor=bool(record.get("enforces_two_factor")),
        findings=[
            FindingSummary(str(finding.get("title") or finding.get("key") or ""), int(finding.get("count") or 0))
            for finding in record.get("findings") or []
            if isinstance(finding, dict)
        ],
    )


def reviews_for_approver(
    session: Session, slack_id: str, account_ids: Sequence[str] | None = None
) -> tuple[list[AccountSummary], datetime | None]:
    """The stored counts of the accounts `slack_id` approved for when they were reviewed (only those
    still requestable, when `account_ids` is known), and the date of the oldest of them."""
    run = get_run(session, REVIEW_RESULTS)
    stored = (run.result or {}).get("accounts") if run is not None else None
    if not isinstance(stored, dict):
        return [], None
    mine = [
        record
        for account_id, record in stored.items()
        if isinstance(record, dict)
        and slack_id in (record.get("approvers") or [])
        and (account_ids is None or account_id in account_ids)
    ]
    mine.sort(key=lambda record: str(record.get("name") or "").casefold())
    dates = [datetime.fromisoformat(str(record["computed_at"])) for record in mine if record.get("computed_at")]
    return [_summary(record) for record in mine], min(dates) if dates else None
