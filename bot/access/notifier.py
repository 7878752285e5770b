"""Telling people: the approvers' thread roots and replies, and the requester's DMs.

A request may have several roots (one DM per approver); every update and reply goes to all of
them. A failed `chat.update` never loses anything: the request is marked for the next sweep.

An approval's messages (root redraw, thread reply, the requester's DM) are held for its invite's
outcome, which usually follows within tens of milliseconds: both then go out together, one
`chat.update` per root, one reply and one DM instead of two of each (Slack allows about 50 updates
a minute, and the requester reads one message, not two). They go out alone, in order before the
outcome, as soon as the invite is rescheduled, after ROOT_REFRESH_DELAY, or at shutdown.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from enum import Enum

from sqlalchemy.orm import Session

from bot.access.directory import Directory
from bot.access.terms import duration_choices, from_seconds
from bot.cloudflare.errors import CloudflareError
from bot.core.clock import Clock
from bot.core.config import Settings
from bot.core.timers import Deadline, Deadlines
from bot.slack.gateway import SLACK_FAILED, Block, SlackGateway, failure_reason, may_have_taken_effect
from bot.slack.messages import request_root, summary_text, text_block
from storage.db import Database
from storage.models import AccessRequest
from storage.repository import claim, get_request, messages_for, state_stamp
from storage.states import RequestStatus

log = logging.getLogger(__name__)
SLACK_REPAIR_DELAY = timedelta(minutes=1)
#: The longest an approval's messages wait for its invite to start (it may queue behind others);
#: once it has started they wait at most ROOT_REFRESH_DELAY more.
QUEUED_HOLD = 10.0
#: Requests whose thread roots are remembered (they are written once, when the request is filed).
ROOTS_REMEMBERED = 4096
#: How many times one redraw draws a request that keeps changing under it before leaving it to the sweep.
REDRAWS = 3


class Delivery(Enum):
    SENT = "sent"
    REFUSED = "refused"
    #: No answer, or a 5xx: it may have arrived.
    UNCONFIRMED = "unconfirmed"


@dataclass(frozen=True)
class Root:
    channel_id: str
    ts: str


@dataclass(frozen=True)
class Announcement:
    """What one change tells people: a thread reply and (optionally) a DM.

    `lead` and `dm_lead` open a message that goes on with the next change (an approval followed by
    its invite's outcome); `dm_follow` is the DM's wording after such a lead.
    """

    thread: str
    dm_user: str | None = None
    dm: str = ""
    lead: str = ""
    dm_lead: str = ""
    dm_follow: str = ""


@dataclass
class _Held:
    announcement: Announcement
    deadline: Deadline | None = None
    #: Taken by the outcome (sent together) or by its release (sent alone, `then` after it).
    taken: bool = False
    then: Callable[[], None] | None = None


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
        #: Approvals' messages waiting for their invite's outcome.
        self._held: dict[int, _Held] = {}
        self._deadlines = Deadlines("held-announcements")
        #: Each request's roots, as filed: they never change, so reading them once is enough.
        self._roots: OrderedDict[int, tuple[Root, ...]] = OrderedDict()
        #: Requests this process is filing (posting and storing their roots), with the replies that
        #: came meanwhile: they go out, in order, once the roots are stored (`filing_done`).
        self._filing: dict[int, list[tuple[str, Sequence[Block]]]] = {}
        self._lock = threading.Lock()  # guards `_held`, `_roots`, `_filing` and `_drawing`
        #: A lock per request being redrawn, and how many redraws hold or wait for it.
        self._drawing: dict[int, tuple[threading.Lock, int]] = {}
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
            approver_ids = sorted(self._directory.approver_ids_to_tell(request.account_id))
            try:
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

        `state_changed=False` (a reminder redrawing the age, the sweep's repair) skips the
        after-change hooks. True: redrawn.
        """
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

    def hold(self, request_id: int, announcement: Announcement) -> None:
        """Hold a change's messages (and the root redraw) for the invite outcome that follows it.

        They go out with the outcome (`announce`), or alone when `release`d: the invite was
        rescheduled or handed to another worker, it did not start within QUEUED_HOLD or did not
        finish within ROOT_REFRESH_DELAY of its start (`started`), or the bot stops. With a delay
        of 0 they go out at once, on the Slack pool.
        """
        held = _Held(announcement)
        with self._lock:
            replaced = self._held.get(request_id)
            self._held[request_id] = held
            if replaced is not None and replaced.taken:
                replaced = None  # already released: on its way, not to be sent again
            elif replaced is not None:
                replaced.taken = True
        if replaced is not None:  # never expected (one approval per run), but nothing is dropped
            if replaced.deadline is not None:
                replaced.deadline.cancel()
            self._send_alone(request_id, replaced)
        if self._settings.root_refresh_delay > 0 and self._background is not None:
            held.deadline = self._deadlines.after(QUEUED_HOLD, lambda: self.release(request_id))
        else:
            self.release(request_id)

    def started(self, request_id: int) -> None:
        """The invite `request_id`'s held messages wait for has started: ROOT_REFRESH_DELAY from now."""
        with self._lock:
            held = self._held.get(request_id)
            if held is None or held.taken:
                return
            if held.deadline is not None:
                held.deadline.cancel()
            held.deadline = self._deadlines.after(self._settings.root_refresh_delay, lambda: self.release(request_id))

    def release(self, request_id: int) -> None:
        """Send what `request_id` holds now, alone (on the Slack pool); its outcome follows it."""
        with self._lock:
            held = self._held.get(request_id)
            if held is None or held.taken:
                return
            held.taken = True
        if held.deadline is not None:
            held.deadline.cancel()
        self.soon(lambda: self._send_alone(request_id, held))

    def announce(self, request_id: int, outcome: Announcement, *, pooled: bool = False) -> None:
        """Tell people an invite's outcome: in one message with the approval's when it still waits,
        else after the approval's own messages; the roots are redrawn once for both.

        `pooled`: sent on the Slack pool. What is held is taken now, as the outcome is known, not
        when the pool gets to it: behind a backlog longer than ROOT_REFRESH_DELAY it would otherwise
        go out alone first, and people would read two messages (and Slack take two of each call)."""
        with self._lock:
            held = self._held.get(request_id)
            if held is not None and held.taken:
                # The approval's messages are going out alone: the outcome follows them.
                held.then = lambda: self._send(request_id, outcome)
                return
            if held is not None:
                held.taken = True
                del self._held[request_id]
        if held is not None and held.deadline is not None:
            held.deadline.cancel()
        if pooled:
            self.soon(lambda: self._announce(request_id, held, outcome))
        else:
            self._announce(request_id, held, outcome)

    def _announce(self, request_id: int, held: _Held | None, outcome: Announcement) -> None:
        if held is None:
            self._send(request_id, outcome)
            return
        first = held.announcement
        thread = f"{first.lead or first.thread}\n{outcome.thread}"
        dm = outcome.dm
        if first.dm_user is not None and first.dm_user == outcome.dm_user:
            dm = f"{first.dm_lead or first.dm}\n{outcome.dm_follow or outcome.dm}"
        elif first.dm_user is not None:
            # The approval's DM is for someone the outcome's is not (no flow does this today): it goes alone.
            self.tell(first.dm_user, first.dm)
        self._send(request_id, Announcement(thread=thread, dm_user=outcome.dm_user, dm=dm))

    def _send_alone(self, request_id: int, held: _Held) -> None:
        try:
            self._send(request_id, held.announcement)
        finally:
            with self._lock:
                if self._held.get(request_id) is held:
                    del self._held[request_id]
                then, held.then = held.then, None
            if then is not None:
                then()

    def _send(self, request_id: int, announcement: Announcement) -> None:
        """Redraw the roots, reply in the thread, then DM: in that order, so the thread reads right."""
        self.refresh_roots(request_id)
        self.reply(request_id, announcement.thread)
        if announcement.dm_user:
            self.tell(announcement.dm_user, announcement.dm)

    def flush(self) -> None:
        """Send now, alone, whatever is still held (at shutdown, before the pools close)."""
        with self._lock:
            waiting = sorted(rid for rid, held in self._held.items() if not held.taken)
        for request_id in waiting:
            try:
                self.release(request_id)
            except Exception:  # one request's failure must not keep the others untold
                log.exception("could not send the held messages of #%s at shutdown", request_id)

    def _redraw(self, request_id: int, *, state_changed: bool = True) -> bool:
        with self._drawing_of(request_id):
            request, ok = self._draw(request_id)
        if request is not None and state_changed:
            self.changed(request)
        return ok

    @contextmanager
    def _drawing_of(self, request_id: int) -> Iterator[None]:
        """One redraw of a request at a time in this process, from its read to its last update: a
        redraw that reads a later state also lands later (the filing's late redraw and the invite
        outcome's, say, or a `chat.update` retried after a 429, never put an older state back)."""
        with self._lock:
            lock, users = self._drawing.get(request_id, (None, 0))
            lock = lock or threading.Lock()
            self._drawing[request_id] = (lock, users + 1)
        try:
            with lock:
                yield
        finally:
            with self._lock:
                lock, users = self._drawing[request_id]
                if users == 1:
                    del self._drawing[request_id]
                else:
                    self._drawing[request_id] = (lock, users - 1)

    def _draw(self, request_id: int) -> tuple[AccessRequest | None, bool]:
        """Draw the request as stored, then check it has not moved on meanwhile. In this process
        redraws take turns (`_drawing_of`); another replica's redraw of a newer state may still land
        first, and this one on top of it. The last to land reads the state after its updates, so a
        drawing that is already old is drawn again: the roots end on the newest state."""
        request: AccessRequest | None = None
        ok = True
        for attempt in range(REDRAWS + 1):
            if attempt == REDRAWS:
                ok = False  # still moving: the sweep draws it once it has settled
                break
            if attempt:
                log.info("request #%s changed while its roots were drawn: drawing them again", request_id)
            with self._db.session() as session:
                request = get_request(session, request_id)
                messages = self._roots_of(request_id, session)
            if request is None:
                return None, True
            ok = self._update_roots(request, messages)
            if not ok or not messages or self._next_redraw_waits(request_id):
                break  # a failure is the sweep's to repair; a redraw waiting here reads after this one
            try:
                with self._db.session() as session:
                    if state_stamp(session, request_id) == (request.status, request.updated_at):
                        break
            except Exception:  # the roots are drawn; whether they are current is left to the sweep
                log.warning("could not check that the roots of #%s show its state", request_id, exc_info=True)
                ok = False
                break
        assert request is not None
        if not ok:
            with self._db.session() as session:
                claim(session, request_id, slack_sync_due_at=self._clock.now() + SLACK_REPAIR_DELAY)
        elif request.slack_sync_due_at is not None:
            with self._db.session() as session:
                # Only the repair this drawing answers: one asked for since, or a newer state, stays due.
                claim(
                    session,
                    request_id,
                    AccessRequest.slack_sync_due_at == request.slack_sync_due_at,
                    AccessRequest.updated_at == request.updated_at,
                    AccessRequest.status == request.status,
                    slack_sync_due_at=None,
                )
        return request, ok

    def _next_redraw_waits(self, request_id: int) -> bool:
        """Another redraw of the request waits for this one's turn, in this process: it reads the
        state after this drawing has landed."""
        with self._lock:
            return self._drawing.get(request_id, (None, 0))[1] > 1

    def _update_roots(self, request: AccessRequest, messages: Sequence[Root]) -> bool:
        blocks = self.render_root(request)
        ok = True
        for message in messages:
            try:
                self._slack.update(message.channel_id, message.ts, summary_text(request), blocks)
            except SLACK_FAILED as error:  # the sweep repairs it (an update may be repeated)
                ok = False
                log.warning(
                    "could not update root of #%s in %s: %s", request.id, message.channel_id, failure_reason(error)
                )
        return ok

    def changed(self, request: AccessRequest) -> None:
        for hook in self.on_change:
            try:
                hook(request)
            except Exception:  # a view refresh must never break the flow that changed the request
                log.exception("after-change hook failed for #%s", request.id)

    def reply(self, request_id: int, text: str, blocks: Sequence[Block] = ()) -> int:
        """Post `text` in every copy's thread; returns how many threads got it.

        A root can be clicked before the filing has stored the roots. While this process files the
        request, a reply waits, in order, and goes out in each thread once they are stored."""
        with self._lock:
            waiting = self._filing.get(request_id)
            if waiting is not None:
                waiting.append((text, blocks))
                return 0
        return self._post(request_id, self._roots_of(request_id), text, blocks)

    def filing_started(self, request_id: int) -> None:
        """The filing is about to post `request_id`'s roots: its replies wait for `filing_done`."""
        with self._lock:
            self._filing.setdefault(request_id, [])

    def filing_done(self, request_id: int) -> None:
        """Post the replies that waited, in order, in the threads the filing stored (those that
        come while these go out wait behind them); without roots there is no thread for them."""
        while True:
            with self._lock:
                waiting = self._filing.get(request_id, [])
                roots = self._roots.get(request_id, ())
                if not waiting or not roots:
                    self._filing.pop(request_id, None)
                    break
                self._filing[request_id] = []
            for text, blocks in waiting:
                try:
                    self._post(request_id, roots, text, blocks)
                except Exception:  # one reply's failure must not keep the next, or the filing, from going on
                    log.exception("could not post a waiting reply in the threads of #%s", request_id)
        if waiting:
            log.warning("request #%s has no thread: %d replies were not posted", request_id, len(waiting))

    def _post(self, request_id: int, roots: Sequence[Root], text: str, blocks: Sequence[Block]) -> int:
        delivered = 0
        for root in roots:
            try:
                self._slack.post(root.channel_id, text, blocks or text_block(text), thread_ts=root.ts)
                delivered += 1
            except SLACK_FAILED as error:  # never sent again: it may be in the thread
                log.warning("could not reply in the thread of #%s: %s", request_id, failure_reason(error))
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
        self.remember_roots(request_id, roots)
        return roots

    def remember_roots(self, request_id: int, roots: Sequence[Root]) -> None:
        """Keep a request's roots as stored (the filing hands them over once committed, so its
        approval, usually on this replica, need not read them back)."""
        if not roots:
            return
        with self._lock:
            self._roots[request_id] = tuple(roots)
            self._roots.move_to_end(request_id)
            while len(self._roots) > ROOTS_REMEMBERED:
                self._roots.popitem(last=False)

    def tell(self, user_id: str, text: str, blocks: Sequence[Block] = ()) -> bool:
        """A DM; True when Slack confirmed it."""
        return self.deliver(user_id, text, blocks) is Delivery.SENT

    def deliver(self, user_id: str, text: str, blocks: Sequence[Block] = ()) -> Delivery:
        """A DM, and whether it went: for callers that tell others how it went (never sent again)."""
        try:
            self._slack.dm(user_id, text, blocks or text_block(text))
            return Delivery.SENT
        except SLACK_FAILED as error:
            log.warning("could not DM %s: %s", user_id, failure_reason(error))
            return Delivery.UNCONFIRMED if may_have_taken_effect(error) else Delivery.REFUSED
