"""A running bot: migrated database, services, Bolt app, scheduler; started and stopped as one."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from apscheduler.schedulers.background import BackgroundScheduler
from slack_bolt import App
from starlette.applications import Starlette

from bot.access.services import Services
from bot.core.clock import Clock
from bot.core.config import Settings
from bot.ops.app import build_bolt_app
from bot.ops.metrics import Metrics
from bot.ops.scheduler import Sweeper, start_scheduler
from bot.ops.server import create_web_app, ops_routes
from bot.ops.wiring import build_services
from bot.slack.transport import PooledWebClient
from storage.migrate import upgrade

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    services: Services
    bolt_app: App
    sweeper: Sweeper
    scheduler: BackgroundScheduler | None = None
    run_scheduler: bool = True
    metrics: Metrics | None = None
    _stopped: threading.Event = field(default_factory=threading.Event)

    @classmethod
    def start(
        cls,
        settings: Settings,
        *,
        socket_mode: bool = False,
        clock: Clock | None = None,
        run_scheduler: bool = True,
        **service_options: object,
    ) -> Runtime:
        metrics = Metrics()
        services = build_services(settings, clock=clock, metrics=metrics, **service_options)  # type: ignore[arg-type]
        metrics.watch(services)
        upgrade(services.db.engine)
        return cls(
            services,
            build_bolt_app(services, socket_mode=socket_mode),
            Sweeper(services, on_swept=metrics.observe_sweep),
            run_scheduler=run_scheduler,
            metrics=metrics,
        )

    def begin_background_work(self) -> None:
        """Resume approved-but-unsent invites at once, then sweep on the schedule."""
        self.services.cloudflare_executor.submit(self.services.outbox.send_due)
        self.services.cloudflare_executor.submit(self.services.directory.warm)
        if self.run_scheduler:
            self.scheduler = start_scheduler(self.services, self.sweeper)

    def stop(self) -> None:
        if self._stopped.is_set():
            return
        self._stopped.set()
        if self.scheduler is not None:
            self.scheduler.shutdown(wait=True)
        self.services.close()
        client = self.services.slack.client
        if isinstance(client, PooledWebClient):
            client.http.close()

    def ops_app(self, slack_link: Callable[[], str]) -> Starlette:
        """Socket Mode's `/healthz` and `/metrics` (no Slack route: Slack talks over the socket)."""
        return Starlette(routes=ops_routes(self.services, self.metrics, slack_link=slack_link))

    def web_app(self) -> Starlette:
        return create_web_app(
            self.bolt_app,
            self.services,
            on_startup=self.begin_background_work,
            on_shutdown=self.stop,
            metrics=self.metrics,
        )
