"""Wiring: builds every collaborator once from Settings. Nothing below `bot.ops` imports this module."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from bot.access.audit import AuditLog
from bot.access.decisions import Decisions
from bot.access.directory import Directory
from bot.access.filing import Filing
from bot.access.home import HomeRefresher
from bot.access.invites import InviteOutbox
from bot.access.notifier import Notifier
from bot.access.services import Services
from bot.cloudflare.client import CloudflareClient, CloudflareCredentials
from bot.cloudflare.pacing import CloudflareBudget, CloudflarePause
from bot.core.clock import Clock, SystemClock
from bot.core.config import Settings
from bot.core.executor import TrackedExecutor
from bot.core.priority import FOREGROUND
from bot.slack.gateway import SlackGateway, make_web_client
from bot.slack.transport import SlackHttp
from bot.slack.validation import cache_block_kit_validators
from storage.db import Database

if TYPE_CHECKING:  # prometheus_client is loaded only by the serving commands
    from bot.ops.metrics import Metrics


def build_services(
    settings: Settings,
    *,
    clock: Clock | None = None,
    sleep: Callable[[float], None] = time.sleep,
    db: Database | None = None,
    workers: int = 4,
    metrics: Metrics | None = None,
) -> Services:
    clock = clock or SystemClock()
    db = db or Database.from_url(settings.database_url)
    cache_block_kit_validators()  # every message and Home tab is validated; find the validators once
    # One keep-alive pool for every Slack call of the process (Web API and response_url posts).
    slack_http = SlackHttp(observe=metrics.observe_slack if metrics else None)
    slack = SlackGateway(
        make_web_client(settings.slack_bot_token.get_secret_value(), settings.slack_api_url, http=slack_http)
    )
    limit = settings.cloudflare_rate_limit
    cloudflare = CloudflareClient(
        base_url=settings.cloudflare_api_url,
        credentials=CloudflareCredentials(
            token=settings.cloudflare_api_token,
            email=settings.cloudflare_api_email,
            key=settings.cloudflare_api_key,
        ),
        timeout=settings.cloudflare_timeout,
        sleep=sleep,
        # One 429 pauses every Cloudflare call of the process (SPEC §6).
        pause=CloudflarePause(clock),
        # One budget paces every Cloudflare call of the process under CLOUDFLARE_RATE_LIMIT (SPEC §6).
        budget=CloudflareBudget(
            limit.calls,
            limit.window.total_seconds(),
            clock=clock,
            sleep=sleep,
            on_wait=metrics.observe_budget_wait if metrics else None,
            on_refused=metrics.observe_budget_refusal if metrics else None,
        ),
        observe=metrics.observe_cloudflare if metrics else None,
    )
    # The work after acks steps aside (at its I/O points) while Slack requests are being answered.
    db.before_session = FOREGROUND.step_aside
    executor = TrackedExecutor(workers, background=True)
    cloudflare_executor = TrackedExecutor(workers, background=True)
    directory = Directory(
        settings=settings, cloudflare=cloudflare, slack=slack, clock=clock, background=cloudflare_executor.submit
    )
    audit = AuditLog(clock)
    notifier = Notifier(
        slack=slack, db=db, directory=directory, clock=clock, settings=settings, background=executor.submit
    )
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
        background=cloudflare_executor.submit,
    )
    decisions = Decisions(
        db=db,
        directory=directory,
        notifier=notifier,
        outbox=outbox,
        audit=audit,
        clock=clock,
        slack=slack,
        settings=settings,
    )
    services = Services(
        settings=settings,
        clock=clock,
        db=db,
        slack=slack,
        cloudflare=cloudflare,
        directory=directory,
        audit=audit,
        notifier=notifier,
        filing=filing,
        outbox=outbox,
        decisions=decisions,
        executor=executor,
        listener_executor=TrackedExecutor(32),
        cloudflare_executor=cloudflare_executor,
    )
    notifier.on_change.append(HomeRefresher(services).request_changed)
    return services
