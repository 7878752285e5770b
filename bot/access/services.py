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
    executor: TrackedExecutor
    listener_executor: TrackedExecutor

    def wait_idle(self, timeout: float = 15.0) -> bool:
        """Until no listener runs and no work is queued (listeners may queue work as they finish)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            remaining = max(0.0, deadline - time.monotonic())
            if not (self.listener_executor.wait_idle(remaining) and self.executor.wait_idle(remaining)):
                return False
            if self.listener_executor.unfinished == 0 and self.executor.unfinished == 0:
                return True
        return False

    def close(self) -> None:
        self.listener_executor.shutdown(wait=True)
        self.executor.shutdown(wait=True)
        self.cloudflare.close()
        self.db.engine.dispose()
