"""The App Home tab's content (own requests, the approver's queue) and its coalesced refresh."""

from __future__ import annotations

import logging
import threading

from bot.access.services import Services
from bot.cloudflare.errors import CloudflareError
from bot.slack.gateway import SlackError, View
from bot.slack.home import home_view
from storage.models import AccessRequest
from storage.repository import pending_for_accounts, requests_of

log = logging.getLogger(__name__)
MAX_OWN = 15
MAX_PENDING = 20


def build_home(services: Services, user_id: str) -> View:
    with services.db.session() as session:
        own = list(requests_of(session, user_id, limit=MAX_OWN))
        try:
            account_ids = [account.id for account in services.directory.accounts()]
        except CloudflareError:
            account_ids = []
        candidates = list(pending_for_accounts(session, account_ids, limit=200))
    try:
        approvable = set(
            services.directory.accounts_approved_by(user_id, sorted({request.account_id for request in candidates}))
        )
    except CloudflareError:
        approvable = set()
    waiting = [
        request for request in candidates if request.account_id in approvable and request.requester_slack_id != user_id
    ][:MAX_PENDING]
    grantable = {
        account_id: services.directory.requestable_roles(account_id)
        for account_id in {request.account_id for request in waiting}
    }
    return home_view(own=own, waiting=waiting, grantable_roles=grantable, now=services.clock.now())


class HomeRefresher:
    """Republishes the Home tab of everyone a change concerns, coalesced.

    A burst of changes (100 approvals in a minute) must not become hundreds of `views.publish`
    calls: users are marked dirty and published once per HOME_REFRESH_DELAY.
    """

    def __init__(self, services: Services) -> None:
        self._services = services
        self._dirty: set[str] = set()
        self._scheduled = False
        self._lock = threading.Lock()

    def request_changed(self, request: AccessRequest) -> None:
        try:
            approvers = self._services.directory.approver_ids(request.account_id)
        except CloudflareError:
            approvers = frozenset()
        self.mark({request.requester_slack_id, *approvers})

    def mark(self, user_ids: set[str]) -> None:
        with self._lock:
            self._dirty |= user_ids
            if self._scheduled:
                return
            self._scheduled = True
        delay = self._services.settings.home_refresh_delay
        if delay > 0:
            timer = threading.Timer(delay, self._submit_flush)
            timer.daemon = True
            timer.start()
        else:
            self._services.executor.submit(self._flush)

    def _submit_flush(self) -> None:
        try:
            self._services.executor.submit(self._flush)
        except RuntimeError:  # shutting down: the next start shows fresh data anyway
            log.info("not refreshing Home tabs: shutting down")

    def _flush(self) -> None:
        with self._lock:
            users, self._dirty, self._scheduled = self._dirty, set(), False
        for user_id in sorted(users):
            try:
                self._services.slack.publish_home(user_id, build_home(self._services, user_id))
            except SlackError as error:
                log.warning("could not refresh the Home tab of %s: %s", user_id, error.code)
