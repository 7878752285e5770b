"""Telling people: the approvers' thread roots and replies, and the requester's DMs.

A request may have several roots (one DM per approver); every update and reply goes to all of
them. A failed `chat.update` never loses anything: the request is marked for the next sweep.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import timedelta

from bot.access.directory import Directory
from bot.access.terms import duration_choices, from_seconds
from bot.cloudflare.errors import CloudflareError
from bot.core.clock import Clock
from bot.core.config import Settings
from bot.slack.gateway import Block, SlackError, SlackGateway
from bot.slack.messages import request_root, summary_text, text_block
from storage.db import Database
from storage.models import AccessRequest
from storage.repository import claim, get_request, messages_for
from storage.states import RequestStatus

log = logging.getLogger(__name__)
SLACK_REPAIR_DELAY = timedelta(minutes=1)


class Notifier:
    def __init__(
        self, *, slack: SlackGateway, db: Database, directory: Directory, clock: Clock, settings: Settings
    ) -> None:
        self._settings = settings
        self._slack = slack
        self._db = db
        self._directory = directory
        self._clock = clock
        #: Called with the request after every change shown to people (e.g. App Home refresh).
        self.on_change: list[Callable[[AccessRequest], None]] = []

    def render_root(self, request: AccessRequest) -> list[Block]:
        approver_ids: Sequence[str] = ()
        roles = []
        if request.status == RequestStatus.PENDING.value:
            try:
                approver_ids = sorted(self._directory.approver_ids(request.account_id))
                roles = self._directory.requestable(request.account_id, zoned=bool(request.zone_ids))
            except CloudflareError as error:
                log.warning("rendering #%s without fresh roles: %s", request.id, error)
        return request_root(
            request,
            now=self._clock.now(),
            approver_ids=approver_ids,
            grantable_roles=roles,
            duration_choices=duration_choices(self._settings, from_seconds(request.requested_duration_s)),
        )

    def refresh_roots(self, request_id: int, *, state_changed: bool = True) -> bool:
        """Redraw every thread root; on failure schedule a repair by the sweep.

        `state_changed=False` (a reminder redrawing the age) skips the after-change hooks.
        """
        with self._db.session() as session:
            request = get_request(session, request_id)
            messages = list(messages_for(session, request_id))
        if request is None:
            return True
        blocks = self.render_root(request)
        ok = True
        for message in messages:
            try:
                self._slack.update(message.channel_id, message.ts, summary_text(request), blocks)
            except SlackError as error:
                ok = False
                log.warning(
                    "could not update root of #%s in %s: %s",
                    request_id,
                    message.channel_id,
                    error.code,
                )
        if not ok or request.slack_sync_due_at is not None:  # nothing to write when all is in step
            with self._db.session() as session:
                claim(
                    session,
                    request_id,
                    slack_sync_due_at=None if ok else self._clock.now() + SLACK_REPAIR_DELAY,
                )
        if state_changed:
            self.changed(request)
        return ok

    def changed(self, request: AccessRequest) -> None:
        for hook in self.on_change:
            try:
                hook(request)
            except Exception:  # a view refresh must never break the flow that changed the request
                log.exception("after-change hook failed for #%s", request.id)

    def reply(self, request_id: int, text: str, blocks: Sequence[Block] = ()) -> int:
        """Post `text` in every copy's thread; returns how many threads got it."""
        with self._db.session() as session:
            messages = list(messages_for(session, request_id))
        delivered = 0
        for message in messages:
            try:
                self._slack.post(message.channel_id, text, blocks or text_block(text), thread_ts=message.ts)
                delivered += 1
            except SlackError as error:
                log.warning("could not reply in the thread of #%s: %s", request_id, error.code)
        return delivered

    def tell(self, user_id: str, text: str, blocks: Sequence[Block] = ()) -> bool:
        try:
            self._slack.dm(user_id, text, blocks or text_block(text))
            return True
        except SlackError as error:
            log.warning("could not DM %s: %s", user_id, error.code)
            return False
