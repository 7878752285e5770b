"""Scheduled work, run in the serving process by APScheduler every SCHEDULER_INTERVAL.

The sweep itself is a plain function of the clock (`Sweeper.run_once`), so tests drive it with an
injected clock; APScheduler only decides when it runs. Invites are also polled on their own, much
shorter cadence (`InviteOutbox.heartbeat`, INVITE_LEASE/6): one rescheduled after a 429 goes out
soon after it is due, and one left by a crashed holder is taken over within INVITE_LEASE.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy import select

from bot.access.grants import Grants
from bot.access.invite_followup import InviteFollowUp
from bot.access.pending_sweep import PendingSweep
from bot.access.report_digest import post_digest_if_due
from bot.access.services import Services
from storage.models import AccessRequest
from storage.repository import prune_events

log = logging.getLogger(__name__)
BATCH = 200


@dataclass
class SweepReport:
    expired: int = 0
    approver_reminders: int = 0
    invites_sent: int = 0
    invites_checked: int = 0
    roots_repaired: int = 0
    end_warnings: int = 0
    removals: int = 0
    holders_checked: int = 0
    errors: list[str] = field(default_factory=list)


class Sweeper:
    def __init__(
        self, services: Services, *, batch: int = BATCH, on_swept: Callable[[float], None] | None = None
    ) -> None:
        self.services = services
        self._on_swept = on_swept
        self.pending = PendingSweep(services, batch=batch)
        self.follow_up = InviteFollowUp(services, batch=batch)
        self.grants = Grants(services, batch=batch)

    def run_once(self) -> SweepReport:
        started = time.perf_counter()
        try:
            return self._run_steps()
        finally:
            if self._on_swept is not None:
                self._on_swept(time.perf_counter() - started)

    def _run_steps(self) -> SweepReport:
        report = SweepReport()
        steps = (
            ("expiry", self._expire),
            ("approver reminders", self._remind),
            ("invites", self._resume_invites),
            ("invite follow-up", self._follow_invites),
            ("end warnings", self._warn_ends),
            ("removals", self._remove_access),
            ("offboarding re-check", self._recheck_holders),
            ("slack repair", self._repair_roots),
            ("event ids", self._prune_events),
            # Last: a review of large accounts is slow, and nothing above waits on it.
            ("access review digest", lambda _report: post_digest_if_due(self.services)),
        )
        for name, step in steps:
            try:
                step(report)
            except Exception as error:  # one failing step must not starve the others
                log.exception("sweep step %s failed", name)
                report.errors.append(f"{name}: {error}")
        return report

    def _expire(self, report: SweepReport) -> None:
        report.expired += self.pending.expire()

    def _remind(self, report: SweepReport) -> None:
        report.approver_reminders += self.pending.remind_approvers()

    def _warn_ends(self, report: SweepReport) -> None:
        report.end_warnings += self.grants.warn_due()

    def _remove_access(self, report: SweepReport) -> None:
        report.removals += self.grants.remove_due()

    def _recheck_holders(self, report: SweepReport) -> None:
        report.holders_checked += self.grants.recheck_holders()

    def _follow_invites(self, report: SweepReport) -> None:
        report.invites_checked += self.follow_up.run()

    def _resume_invites(self, report: SweepReport) -> None:
        report.invites_sent += self.services.outbox.send_due(limit=BATCH)

    def _prune_events(self, _report: SweepReport) -> None:
        with self.services.db.session() as session:
            prune_events(session, before=self.services.clock.now() - timedelta(days=1))

    def _repair_roots(self, report: SweepReport) -> None:
        services = self.services
        now = services.clock.now()
        with services.db.session() as session:
            ids = list(
                session.scalars(
                    select(AccessRequest.id)
                    .where(AccessRequest.slack_sync_due_at.is_not(None), AccessRequest.slack_sync_due_at <= now)
                    .order_by(AccessRequest.slack_sync_due_at)
                    .limit(BATCH)
                )
            )
        for request_id in ids:
            if services.notifier.refresh_roots(request_id, state_changed=False):
                report.roots_repaired += 1


def start_scheduler(services: Services, sweeper: Sweeper) -> BackgroundScheduler:
    scheduler = BackgroundScheduler(timezone="UTC")
    scheduler.add_job(
        sweeper.run_once,
        "interval",
        seconds=services.settings.scheduler_interval.total_seconds(),
        id="sweep",
        max_instances=1,
        coalesce=True,
        misfire_grace_time=None,
    )
    scheduler.add_job(
        services.outbox.send_due,
        "interval",
        seconds=services.outbox.heartbeat.total_seconds(),
        id="invites",
        max_instances=1,
        coalesce=True,
        misfire_grace_time=None,
    )
    scheduler.start()
    return scheduler
