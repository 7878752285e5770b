"""The access-review digest (SPEC §13): with REPORT_CHANNEL set, one message every REPORT_INTERVAL.

Once across replicas and restarts: the run is claimed in `scheduled_runs`, and it is recorded as
done *before* the message is posted, so a crash right after posting can never post it twice (two
digests are never less than REPORT_INTERVAL apart); a crash while reviewing leaves a claim that
lapses after CLAIM_LEASE, and a refused post puts the run back, so the next sweep tries again.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from bot.access.audit import AuditEventType
from bot.access.report import AccessReport, AccountReview
from bot.access.review_summary import save_reviews, summary_of
from bot.access.services import Services
from bot.cloudflare.errors import CloudflareError
from bot.slack.gateway import NEVER_SENT, NO_ANSWER, SlackError
from bot.slack.report_views import digest_blocks, digest_text
from storage.scheduled_runs import RunClaim, claim_run, finish_run, release_run, renew_run, undo_run

log = logging.getLogger(__name__)
DIGEST_JOB = "access_review_digest"
# Renewed after each account, so only a holder that stopped working (a crash) loses it.
CLAIM_LEASE = timedelta(minutes=30)


def post_digest_if_due(services: Services) -> bool:
    """The sweep step: True when this process posted the digest now."""
    channel = services.settings.report_channel
    if not channel:
        return False
    with services.db.session() as session:
        claim = claim_run(
            session,
            DIGEST_JOB,
            now=services.clock.now(),
            every=services.settings.report_interval,
            lease=CLAIM_LEASE,
        )
    if claim is None:
        return False
    try:
        reviewed = _review_all(services, claim)
    except BaseException:
        with services.db.session() as session:
            release_run(session, claim)
        raise
    if reviewed is None:
        return False
    claim, reviews, unreadable = reviewed
    if not reviews:
        log.warning("access review: no account could be read (%s); trying again next sweep", ", ".join(unreadable))
        with services.db.session() as session:
            release_run(session, claim)
        return False
    ran_at = services.clock.now()
    with services.db.session() as session:
        if not finish_run(session, claim, ran_at=ran_at):
            return False  # the claim lapsed and another process runs it
        save_reviews(session, reviews, computed_at=ran_at, replace=not unreadable)
    summaries = [summary_of(review) for review in reviews]
    try:
        posted = services.slack.post(
            channel, digest_text(summaries), digest_blocks(summaries, as_of=ran_at, unreadable=unreadable)
        )
    except (SlackError, NEVER_SENT) as error:  # refused, or never reached Slack: nothing was posted
        why = error.code if isinstance(error, SlackError) else "Slack could not be reached"
        log.warning("could not post the access review to %s (%s); trying again next sweep", channel, why)
        with services.db.session() as session:
            undo_run(session, claim, ran_at=ran_at)
        return False
    except NO_ANSWER as error:  # Slack may have it: posting again could show it twice
        log.warning(
            "Slack did not answer the access review's post to %s (%s); it may be there, and is not posted again",
            channel,
            type(error).__name__,
        )
        return False
    with services.db.session() as session:
        services.audit.record(
            session,
            AuditEventType.REPORT_POSTED,
            request_id=None,
            channel=posted.channel_id,
            ts=posted.ts,
            accounts=[review.account_id for review in reviews],
            unreadable=unreadable,
            findings=_totals(reviews),
        )
    return True


def _totals(reviews: list[AccountReview]) -> dict[str, int]:
    totals: dict[str, int] = {}
    for review in reviews:
        for finding in review.findings:
            totals[finding.key] = totals.get(finding.key, 0) + finding.count
    return totals


def _review_all(services: Services, claim: RunClaim) -> tuple[RunClaim, list[AccountReview], list[str]] | None:
    """Every requestable account; None when the claim was lost meanwhile."""
    report = AccessReport(services)
    reviews: list[AccountReview] = []
    unreadable: list[str] = []
    try:
        accounts = report.accounts()
    except CloudflareError as error:
        log.warning("access review: could not list the accounts: %s", error)
        return claim, [], ["the account list"]
    for account in accounts:
        try:
            reviews.append(report.review(account))
        except CloudflareError as error:
            log.warning("access review: could not read the members of %s: %s", account.label, error)
            unreadable.append(account.label)
        with services.db.session() as session:
            renewed = renew_run(session, claim, until=services.clock.now() + CLAIM_LEASE)
        if renewed is None:
            log.warning("access review: another process took the run over; stopping")
            return None
        claim = renewed
    return claim, reviews, unreadable
