"""Telling people: the approvers' thread roots and replies, and the requester's DMs.

A request may have several roots (one DM per approver); every update and reply goes to all of
them. A failed `chat.update` never loses anything: the request is marked for the next sweep.
An approval's redraw waits (up to ROOT_REFRESH_DELAY) for its invite's outcome, which redraws at
once: the two changes cost one `chat.update` per root, not two.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.orm import Session

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
#: Requests whose thread roots are remembered (they are written once, when the request is filed).
ROOTS_REMEMBERED = 4096


@dataclass(frozen=True)
class Root:
    channel_id: str
    ts: str


class Notifier:
    def __init__(
        self,
        *,
        slack: SlackGateway,
        db: Database,
        directory: Directory,
        clock: Clock,
        settings: Settings,
        background: Callable[..., object] | None = None,
    ) -> None:
        self._settings = settings
        self._background = background
        #: Requests whose roots wait for the change that settles them, with the timer that gives up.
        self._pending: dict[int, threading.Timer] = {}
        #: Each request's roots, as filed: they never change, so reading them once is enough.
        self._roots: OrderedDict[int, tuple[Root, ...]] = OrderedDict()
        self._lock = threading.Lock()  # guards `_pending` and `_roots`
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

    def refresh_roots(self, request_id: int, *, state_changed: bool = True, settling: bool = False) -> bool:
        """Redraw every thread root; on failure schedule a repair by the sweep.

        `settling`: another change is about to follow this one (an approval, then its invite's
        outcome), so the redraw waits up to ROOT_REFRESH_DELAY and the next change's redraw, which
        comes at once, shows both: one `chat.update` per root instead of two. A redraw that nothing
        replaced runs when the delay ends (an invite rescheduled, or slower than the delay).
        `state_changed=False` (a reminder redrawing the age, the sweep's repair) skips the
        after-change hooks. True: redrawn, or scheduled.
        """
        delay = self._settings.root_refresh_delay
        if settling and delay > 0 and self._background is not None:
            with self._lock:
                if request_id in self._pending:
                    return True
                timer = threading.Timer(delay, self._redraw_due, args=(request_id,))
                timer.daemon = True
                self._pending[request_id] = timer
            timer.start()
            return True
        with self._lock:
            waiting = self._pending.pop(request_id, None)
        if waiting is not None:
            waiting.cancel()  # this redraw shows that change too
        return self._redraw(request_id, state_changed=state_changed)

    def soon(self, work: Callable[[], object]) -> None:
        """Run `work` (telling people) on the Slack pool; here and now without one, or when it is closing."""
        if self._background is not None:
            try:
                self._background(work)
                return
            except RuntimeError:
                pass
        work()

    def _redraw_due(self, request_id: int) -> None:
        with self._lock:
            if self._pending.pop(request_id, None) is None:
                return  # redrawn meanwhile
        self.soon(lambda: self._redraw(request_id))

    def flush(self) -> None:
        """Redraw now the roots still waiting (at shutdown, before the pools close)."""
        with self._lock:
            pending, self._pending = self._pending, {}
        for request_id, timer in sorted(pending.items()):
            timer.cancel()
            try:
                self._redraw(request_id)
            except Exception:  # one request's failure must not keep the others stale
                log.exception("could not redraw the roots of #%s at shutdown", request_id)

    def _redraw(self, request_id: int, *, state_changed: bool = True) -> bool:
        with self._db.session() as session:
            request = get_request(session, request_id)
            messages = self._roots_of(request_id, session)
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
        messages = self._roots_of(request_id)
        delivered = 0
        for message in messages:
            try:
                self._slack.post(message.channel_id, text, blocks or text_block(text), thread_ts=message.ts)
                delivered += 1
            except SlackError as error:
                log.warning("could not reply in the thread of #%s: %s", request_id, error.code)
        return delivered

    def _roots_of(self, request_id: int, session: Session | None = None) -> tuple[Root, ...]:
        """The request's thread roots. They are all written in the filing's one transaction, so a
        list once seen non-empty is final and is kept (the most recent ROOTS_REMEMBERED requests)."""
        with self._lock:
            known = self._roots.get(request_id)
            if known is not None:
                self._roots.move_to_end(request_id)
                return known
        if session is None:
            with self._db.session() as own:
                return self._roots_of(request_id, own)
        roots = tuple(Root(m.channel_id, m.ts) for m in messages_for(session, request_id))
        if roots:
            with self._lock:
                self._roots[request_id] = roots
                while len(self._roots) > ROOTS_REMEMBERED:
                    self._roots.popitem(last=False)
        return roots

    def tell(self, user_id: str, text: str, blocks: Sequence[Block] = ()) -> bool:
        try:
            self._slack.dm(user_id, text, blocks or text_block(text))
            return True
        except SlackError as error:
            log.warning("could not DM %s: %s", user_id, error.code)
            return False
