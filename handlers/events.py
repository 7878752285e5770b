"""Events API listeners. Slack re-delivers an event it thinks failed; each event_id is handled once."""

from __future__ import annotations

import logging
from typing import Any

from bot.access.home import build_home
from bot.access.services import Services
from storage.repository import remember_event

log = logging.getLogger(__name__)


class EventHandlers:
    def __init__(self, services: Services) -> None:
        self.services = services

    def on_home_opened(self, body: dict[str, Any], event: dict[str, Any]) -> None:
        if event.get("tab") == "home":
            self.services.executor.submit(self._publish_home, body, event)

    def _publish_home(self, body: dict[str, Any], event: dict[str, Any]) -> None:
        event_id = body.get("event_id")
        if event_id:
            with self.services.db.session() as session:
                if not remember_event(session, str(event_id), now=self.services.clock.now()):
                    log.info("event %s was already handled; Slack retry ignored", event_id)
                    return
        user_id = event["user"]
        self.services.slack.publish_home(user_id, build_home(self.services, user_id))
