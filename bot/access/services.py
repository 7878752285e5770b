"""The collaborators a listener or a job needs, built once per process by `bot.ops.wiring`."""

from __future__ import annotations

import time
from dataclasses import dataclass

from bot.access.audit import AuditLog
from bot.access.decisions import Decisions
from bot.access.directory import Directory
from bot.access.filing import Filing
from bot.access.invites import InviteOutbox
from bot.access.notifier import Notifier
from bot.cloudflare.client import CloudflareClient
from bot.core.clock import Clock
from bot.core.config import Settings
from bot.core.executor import TrackedExecutor
from bot.slack.gateway import SlackGateway
from storage.db import Database


@dataclass
class Services:
    settings: Settings
    clock: Clock
    db: Database
    slack: SlackGateway
    cloudflare: CloudflareClient
    directory: Directory
    audit: AuditLog
    notifier: Notifier
    filing: Filing
    outbox: InviteOutbox
    decisions: Decisions
    #: Slack-facing work handed over by listeners after the ack (replies, modals, filing).
    executor: TrackedExecutor
    listener_executor: TrackedExecutor
    #: Work that waits on Cloudflare (invites, directory refreshes, start-up loads): it never holds a
    #: worker that a Slack-facing task needs, so a 429 storm cannot delay a reply or a modal.
    cloudflare_executor: TrackedExecutor

    def _pools(self) -> tuple[TrackedExecutor, ...]:
        return (self.listener_executor, self.executor, self.cloudflare_executor)

    def wait_idle(self, timeout: float = 15.0) -> bool:
        """Until no work runs or is queued in any pool (each may queue work on the others)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not all(pool.wait_idle(max(0.0, deadline - time.monotonic())) for pool in self._pools()):
                return False
            # The pools are read one after another; work handed from one not yet read to one already
            # read would slip through, but it moves a `submitted` count, read before and after.
            before = [pool.submitted for pool in self._pools()]
            if all(pool.unfinished == 0 for pool in self._pools()) and before == [
                pool.submitted for pool in self._pools()
            ]:
                return True
        return False

    def close(self) -> None:
        self.notifier.flush()
        for pool in self._pools():
            pool.shutdown(wait=True)
        self.cloudflare.close()
        self.db.engine.dispose()
