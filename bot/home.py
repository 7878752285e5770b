"""The App Home tab: a person's own requests, and for approvers what waits on them."""

from __future__ import annotations

import logging
import threading

from slack_sdk.errors import SlackApiError
from slack_sdk.models.blocks import Block, ContextBlock, DividerBlock, HeaderBlock, MarkdownTextObject, SectionBlock
from slack_sdk.models.views import View

from bot.cloudflare.errors import CloudflareError
from bot.durations import format_duration
from bot.formatting import escape, mention, number, role_list
from bot.messages import STATUS_LABEL, decision_blocks
from bot.services import Services
from storage.models import AccessRequest
from storage.repository import pending_for_accounts, requests_of
from storage.states import RequestStatus

log = logging.getLogger(__name__)
MAX_OWN = 15
MAX_PENDING = 20


def home_view(services: Services, user_id: str) -> View:
    now = services.clock.now()
    with services.db.session() as session:
        own = list(requests_of(session, user_id, limit=MAX_OWN))
        try:
            account_ids = [account.id for account in services.directory.accounts()]
        except CloudflareError:
            account_ids = []
        candidates = list(pending_for_accounts(session, account_ids, limit=200))
    blocks: list[Block] = [HeaderBlock(text="Your Cloudflare access requests")]
    if not own:
        blocks.append(
            SectionBlock(
                text=MarkdownTextObject(
                    text="You have no requests yet. Type `/cf-access` in any channel to ask for access to a Cloudflare "
                    "account; its Super Administrators decide here in Slack."
                )
            )
        )
    for request in own:
        roles = request.granted_role_names or request.requested_role_names
        blocks.append(
            SectionBlock(
                text=MarkdownTextObject(
                    text=f"*{number(request.id)}* {escape(request.account_name)}: {escape(role_list(roles))}\n"
                    f"{STATUS_LABEL[RequestStatus(request.status)]}, filed {format_duration(now - request.created_at)} ago"
                )
            )
        )
    try:
        approvable = set(
            services.directory.accounts_approved_by(user_id, sorted({request.account_id for request in candidates}))
        )
    except CloudflareError:
        approvable = set()
    waiting = [
        request for request in candidates if request.account_id in approvable and request.requester_slack_id != user_id
    ][:MAX_PENDING]
    if waiting:
        blocks.extend([DividerBlock(), HeaderBlock(text="Waiting for your decision")])
        for request in waiting:
            blocks.append(
                SectionBlock(
                    text=MarkdownTextObject(
                        text=f"*{number(request.id)}* {mention(request.requester_slack_id)} ({escape(request.requester_email)}) "
                        f"asks for *{escape(role_list(request.requested_role_names))}* on *{escape(request.account_name)}*, "
                        f"{format_duration(now - request.created_at)} ago\n>{escape(request.reason[:500])}"
                    )
                )
            )
            blocks.extend(decision_blocks(request, services.directory.requestable_roles(request.account_id)))
    blocks.append(ContextBlock(elements=[MarkdownTextObject(text="`/cf-access help` lists every command.")]))
    return View(type="home", blocks=blocks[:100])


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
                self._services.slack.publish_home(user_id, home_view(self._services, user_id))
            except SlackApiError as error:
                log.warning("could not refresh the Home tab of %s: %s", user_id, error.response.get("error"))
