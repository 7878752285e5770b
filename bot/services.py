"""Wiring: builds every collaborator once from Settings, so handlers and jobs share them."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from slack_sdk import WebClient

from bot.audit import AuditLog
from bot.clock import Clock, SystemClock
from bot.cloudflare.client import CloudflareClient, CloudflareCredentials
from bot.config import Settings
from bot.decisions import Decisions
from bot.directory import Directory
from bot.executor import TrackedExecutor
from bot.filing import Filing
from bot.invites import InviteOutbox
from bot.notifier import Notifier
from bot.slack_gateway import SlackGateway, make_web_client
from storage.db import Database


@dataclass
class Services:
    settings: Settings
    clock: Clock
    db: Database
    web_client: WebClient
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

    @classmethod
    def build(
        cls,
        settings: Settings,
        *,
        clock: Clock | None = None,
        sleep: Callable[[float], None] = time.sleep,
        db: Database | None = None,
        workers: int = 4,
    ) -> Services:
        clock = clock or SystemClock()
        db = db or Database.from_url(settings.database_url)
        web_client = make_web_client(settings.slack_bot_token.get_secret_value(), settings.slack_api_url)
        slack = SlackGateway(web_client)
        cloudflare = CloudflareClient(
            base_url=settings.cloudflare_api_url,
            credentials=CloudflareCredentials(
                token=settings.cloudflare_api_token,
                email=settings.cloudflare_api_email,
                key=settings.cloudflare_api_key,
            ),
            timeout=settings.cloudflare_timeout,
            sleep=sleep,
        )
        directory = Directory(settings=settings, cloudflare=cloudflare, slack=slack, clock=clock)
        audit = AuditLog(clock)
        notifier = Notifier(slack=slack, db=db, directory=directory, clock=clock)
        filing = Filing(
            settings=settings, db=db, directory=directory, slack=slack, audit=audit, clock=clock, notifier=notifier
        )
        outbox = InviteOutbox(
            settings=settings,
            db=db,
            cloudflare=cloudflare,
            directory=directory,
            notifier=notifier,
            audit=audit,
            clock=clock,
            sleep=sleep,
        )
        decisions = Decisions(
            db=db, directory=directory, notifier=notifier, outbox=outbox, audit=audit, clock=clock, slack=slack
        )
        services = cls(
            settings=settings,
            clock=clock,
            db=db,
            web_client=web_client,
            slack=slack,
            cloudflare=cloudflare,
            directory=directory,
            audit=audit,
            notifier=notifier,
            filing=filing,
            outbox=outbox,
            decisions=decisions,
            executor=TrackedExecutor(workers),
            listener_executor=TrackedExecutor(32),
        )
        from bot.home import HomeRefresher

        notifier.on_change.append(HomeRefresher(services).request_changed)
        return services

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
