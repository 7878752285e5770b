"""Buttons and selects on request messages (thread roots and the Home tab)."""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt import Ack, Respond

from bot.decisions import already_decided
from bot.invite_followup import InviteFollowUp
from bot.modals import deny_modal
from bot.services import Services
from handlers.common import run_after_ack, tell_actor
from handlers.payloads import decision_click
from storage.repository import get_request
from storage.states import RequestStatus

log = logging.getLogger(__name__)


class ActionHandlers:
    def __init__(self, services: Services) -> None:
        self.services = services

    def on_role_pick(self, ack: Ack) -> None:
        """The role picker's own event; its value is read from `state` when Approve is clicked."""
        ack()

    def on_approve(self, ack: Ack, body: dict[str, Any], respond: Respond) -> None:
        ack()
        run_after_ack(self.services, body, respond, lambda: self._approve(body, respond))

    def _approve(self, body: dict[str, Any], respond: Respond) -> None:
        click = decision_click(body)
        if click is None:
            tell_actor(
                self.services, body, respond, ":warning: That button's payload was not understood; nothing changed."
            )
            return
        result = self.services.decisions.approve(click.request_id, click.user_id, click.granted_role_ids)
        if not result.ok:
            tell_actor(self.services, body, respond, f":warning: {result.message}")

    def on_deny(self, ack: Ack, body: dict[str, Any], respond: Respond) -> None:
        ack()
        run_after_ack(self.services, body, respond, lambda: self._deny(body, respond))

    def _deny(self, body: dict[str, Any], respond: Respond) -> None:
        click = decision_click(body)
        if click is None:
            tell_actor(
                self.services, body, respond, ":warning: That button's payload was not understood; nothing changed."
            )
            return
        services = self.services
        with services.db.session() as session:
            request = get_request(session, click.request_id)
        if request is None:
            tell_actor(services, body, respond, f":warning: Request #{click.request_id} does not exist.")
            return
        if request.status != RequestStatus.PENDING.value:
            tell_actor(services, body, respond, f":warning: {already_decided(request)}")
            return
        refused = services.decisions.refusal(request, click.user_id, "deny")
        if refused:
            tell_actor(services, body, respond, f":warning: {refused}")
            return
        container = body.get("container") or {}
        metadata = {"channel_id": str(container.get("channel_id") or "")}
        requester = services.slack.profile(request.requester_slack_id).name
        services.slack.open_view(body["trigger_id"], deny_modal(request.id, request.account_name, requester, metadata))

    def on_resend_invite(self, ack: Ack, body: dict[str, Any], respond: Respond) -> None:
        ack()
        run_after_ack(self.services, body, respond, lambda: self._resend_invite(body, respond))

    def _resend_invite(self, body: dict[str, Any], respond: Respond) -> None:
        click = decision_click(body)
        if click is None:
            tell_actor(
                self.services, body, respond, ":warning: That button's payload was not understood; nothing changed."
            )
            return
        result = InviteFollowUp(self.services, batch=1).resend(click.request_id, click.user_id)
        tell_actor(
            self.services, body, respond, (":white_check_mark: " if result.ok else ":warning: ") + result.message
        )

    def on_retry_invite(self, ack: Ack, body: dict[str, Any], respond: Respond) -> None:
        ack()
        run_after_ack(self.services, body, respond, lambda: self._retry_invite(body, respond))

    def _retry_invite(self, body: dict[str, Any], respond: Respond) -> None:
        click = decision_click(body)
        if click is None:
            tell_actor(
                self.services, body, respond, ":warning: That button's payload was not understood; nothing changed."
            )
            return
        result = self.services.decisions.retry_invite(click.request_id, click.user_id)
        if not result.ok:
            tell_actor(self.services, body, respond, f":warning: {result.message}")
