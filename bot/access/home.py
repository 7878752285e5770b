"""The App Home tab's content (own requests, the approver's queue) and its coalesced refresh."""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import Callable

from sqlalchemy import func, select

from bot.access.access_model import Grantable
from bot.access.review_summary import reviews_for_approver
from bot.access.services import Services
from bot.cloudflare.errors import CloudflareError
from bot.slack.gateway import SlackError, View
from bot.slack.home import grant_key, home_view
from storage.models import AccessRequest
from storage.repository import (
    count_pending_for_accounts,
    home_viewers_among,
    pending_account_ids,
    pending_for_accounts,
    requests_of,
)

log = logging.getLogger(__name__)
MAX_OWN = 15
MAX_PENDING = 20


def build_home(services: Services, user_id: str) -> View:
    with services.db.session() as session:
        own = list(requests_of(session, user_id, limit=MAX_OWN))
        own_total = len(own)
        if own_total == MAX_OWN:  # the Home tab says how many more `/cf-access status` has
            own_total = session.scalar(
                select(func.count()).select_from(AccessRequest).where(AccessRequest.requester_slack_id == user_id)
            ) or len(own)
        try:
            account_ids = [account.id for account in services.directory.accounts()]
        except CloudflareError:
            account_ids = []
        # Which accounts have anything waiting (an index-only query), then rows only for the ones this
        # person approves: a requester's Home costs no pending rows at all.
        waiting_accounts = pending_account_ids(session, account_ids)
    try:
        approvable = set(services.directory.accounts_approved_by(user_id, sorted(waiting_accounts)))
    except CloudflareError:
        approvable = set()
    with services.db.session() as session:
        # Only the rows shown; the rest are counted (an approver of a busy account has hundreds waiting).
        waiting = list(pending_for_accounts(session, sorted(approvable), limit=MAX_PENDING, not_from=user_id))
        waiting_total = len(waiting)
        if waiting_total == MAX_PENDING:
            waiting_total = count_pending_for_accounts(session, sorted(approvable), not_from=user_id)
    grantable = {
        grant_key(request): _grantable(services, request.account_id, zoned=bool(request.zone_ids))
        for request in waiting
    }
    with services.db.session() as session:
        # The last review's counts (no Cloudflare or Slack call): only for the accounts they approve for.
        reviewed, reviewed_at = reviews_for_approver(session, user_id, account_ids or None)
    return home_view(
        own=own,
        waiting=waiting,
        grantable_roles=grantable,
        now=services.clock.now(),
        own_total=own_total,
        waiting_total=waiting_total,
        review=reviewed,
        reviewed_at=reviewed_at,
    )


def _grantable(services: Services, account_id: str, *, zoned: bool) -> list[Grantable]:
    """The roles to offer (for the request's scope); none when Cloudflare cannot say (the Home tab
    then points to the thread)."""
    try:
        return services.directory.requestable(account_id, zoned=zoned)
    except CloudflareError as error:
        log.warning("Home tab without the role picker for account %s: %s", account_id, error)
        return []


class HomeRefresher:
    """Republishes the Home tab of everyone a change concerns, coalesced.

    A burst of changes (100 approvals in a minute) must not become hundreds of `views.publish`
    calls: users are marked dirty and published once per HOME_REFRESH_DELAY, and only those who
    have opened the tab (anyone else gets a fresh tab from `app_home_opened` when they first open
    it). A publish that fails is tried once more a delay later, so one Slack hiccup does not leave
    a stale tab until the next change; one person's failure never stops the others' tabs.
    """

    def __init__(self, services: Services) -> None:
        self._services = services
        self._dirty: set[str] = set()
        self._scheduled = False
        self._lock = threading.Lock()

    def request_changed(self, request: AccessRequest) -> None:
        approvers = self._services.directory.approver_ids_to_tell(request.account_id)
        self.mark({request.requester_slack_id, *approvers})

    def mark(self, user_ids: set[str]) -> None:
        with self._lock:
            self._dirty |= user_ids
            if self._scheduled:
                return
            self._scheduled = True
        self._later(self._flush)

    def _later(self, work: Callable[[], None]) -> None:
        delay = self._services.settings.home_refresh_delay
        if delay > 0:
            timer = threading.Timer(delay, self._submit, args=(work,))
            timer.daemon = True
            timer.start()
        else:
            self._submit(work)

    def _submit(self, work: Callable[[], None]) -> None:
        try:
            self._services.executor.submit(work)
        except RuntimeError:  # shutting down: the next start shows fresh data anyway
            log.info("not refreshing Home tabs: shutting down")

    def _flush(self) -> None:
        with self._lock:
            users, self._dirty, self._scheduled = self._dirty, set(), False
        failed = self._publish(self._viewers(users))
        if failed:
            log.info("retrying the Home tab of %d people later", len(failed))
            self._later(lambda: self._retry(failed))

    def _viewers(self, users: set[str]) -> set[str]:
        """Those of `users` who have opened the tab; all of them when the database cannot say."""
        try:
            with self._services.db.session() as session:
                return home_viewers_among(session, users)
        except Exception:
            log.warning("could not tell whose Home tab is open; refreshing all %d", len(users), exc_info=True)
            return users

    def _retry(self, users: set[str]) -> None:
        with self._lock:
            users = users - self._dirty  # a flush is due for those anyway
        failed = self._publish(users)
        if failed:
            log.warning("gave up refreshing the Home tab of %s until their next change", ", ".join(sorted(failed)))

    def _publish(self, users: set[str]) -> set[str]:
        """Publish each tab; return those that failed."""
        failed: set[str] = set()
        for user_id in sorted(users):
            try:
                self._services.slack.publish_home(user_id, build_home(self._services, user_id))
            except SlackError as error:
                log.warning("could not refresh the Home tab of %s: %s", user_id, error.code)
                failed.add(user_id)
            except Exception:
                log.exception("could not refresh the Home tab of %s (ref %s)", user_id, secrets.token_hex(4))
                failed.add(user_id)
        return failed
