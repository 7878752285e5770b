"""Events API listeners. Slack re-delivers an event it thinks failed; each event_id is handled once."""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import delete

from bot.access.grants import Grants
from bot.access.home import build_home
from bot.access.services import Services
from storage.models import ProcessedEvent
from storage.repository import record_home_viewer, remember_event

log = logging.getLogger(__name__)


class EventHandlers:
    def __init__(self, services: Services) -> None:
        self.services = services

    def on_home_opened(self, body: dict[str, Any], event: dict[str, Any]) -> None:
        if event.get("tab") == "home":
            self.services.executor.submit(self._publish_home, body, event)

    def _publish_home(self, body: dict[str, Any], event: dict[str, Any]) -> None:
        """Publish once per event_id; a failed publish gives the id back so Slack's retry can try again.

        The id is claimed before the work, so a retry that arrives while the first delivery is still
        publishing is skipped; it is released if the publish fails (the executor logs the failure).
        """
        event_id = str(body.get("event_id") or "")
        if event_id:
            with self.services.db.session() as session:
                if not remember_event(session, event_id, now=self.services.clock.now()):
                    log.info("event %s was already handled; Slack retry ignored", event_id)
                    return
        try:
            user_id = event["user"]
            with self.services.db.session() as session:
                record_home_viewer(session, user_id, now=self.services.clock.now())
            self.services.slack.publish_home(user_id, build_home(self.services, user_id))
        except Exception:
            if event_id:
                self._forget(event_id)
            raise

    def _forget(self, event_id: str) -> None:
        try:
            with self.services.db.session() as session:
                session.execute(delete(ProcessedEvent).where(ProcessedEvent.event_id == event_id))
        except Exception:  # the publish failure is what matters; this only costs Slack's retry
            log.warning("could not release event %s for Slack's retry", event_id, exc_info=True)
        else:
            log.info("Home tab not published for event %s; a retry of it will be handled", event_id)

    def on_user_change(self, body: dict[str, Any], event: dict[str, Any]) -> None:
        """A deactivated person loses the access the bot granted them (OFFBOARD_DEACTIVATED)."""
        user = event.get("user") or {}
        if not (isinstance(user, dict) and user.get("deleted") is True and isinstance(user.get("id"), str)):
            return
        slack_id = user["id"]
        self.services.executor.submit(self._offboard, str(body.get("event_id") or ""), slack_id)

    def _offboard(self, event_id: str, slack_id: str) -> None:
        services = self.services
        if event_id:
            with services.db.session() as session:
                if not remember_event(session, event_id, now=services.clock.now()):
                    log.info("event %s was already handled; Slack retry ignored", event_id)
                    return
        removed = Grants(services).offboard(slack_id, "their Slack account was deactivated")
        log.info("offboarded %s: %s grants revoked or requests cancelled", slack_id, removed)
