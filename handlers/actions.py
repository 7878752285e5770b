"""Buttons and selects on request messages (thread roots and the Home tab)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from slack_bolt import Ack, Respond

from bot.access.decisions import already_decided
from bot.access.invite_followup import InviteFollowUp
from bot.access.services import Services
from bot.slack.gateway import SlackError
from bot.slack.modals import deny_modal
from handlers.common import run_after_ack, tell_actor
from handlers.payloads import DecisionClick, decision_click
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
        self._on_click(ack, body, respond, self._approve)

    def on_deny(self, ack: Ack, body: dict[str, Any], respond: Respond) -> None:
        """Open the reason form at once, on the listener thread, while the trigger is fresh: no
        Cloudflare or Slack look-up first. Who may deny is checked when the form is submitted."""
        ack()
        click = decision_click(body)
        said = self._open_deny_form(click, body) if click else ":warning: That button's payload was not understood."
        if said:
            run_after_ack(self.services, body, respond, lambda: tell_actor(self.services, body, respond, said))

    def on_resend_invite(self, ack: Ack, body: dict[str, Any], respond: Respond) -> None:
        self._on_click(ack, body, respond, self._resend_invite)

    def on_retry_invite(self, ack: Ack, body: dict[str, Any], respond: Respond) -> None:
        self._on_click(ack, body, respond, self._retry_invite)

    def _on_click(
        self,
        ack: Ack,
        body: dict[str, Any],
        respond: Respond,
        handle: Callable[[DecisionClick, dict[str, Any]], str | None],
    ) -> None:
        """Ack, then on the work pool: parse the click, act, and tell the clicker what `handle` returns."""
        ack()

        def work() -> None:
            click = decision_click(body)
            said = (
                handle(click, body) if click else ":warning: That button's payload was not understood; nothing changed."
            )
            if said:
                tell_actor(self.services, body, respond, said)

        run_after_ack(self.services, body, respond, work)

    def _approve(self, click: DecisionClick, _body: dict[str, Any]) -> str | None:
        result = self.services.decisions.approve(click.request_id, click.user_id, click.granted_role_ids)
        return None if result.ok else f":warning: {result.message}"

    def _open_deny_form(self, click: DecisionClick, body: dict[str, Any]) -> str | None:
        services = self.services
        with services.db.session() as session:
            request = get_request(session, click.request_id)
        if request is None:
            return f":warning: Request #{click.request_id} does not exist."
        if request.status != RequestStatus.PENDING.value:
            return f":warning: {already_decided(request)}"
        container = body.get("container") or {}
        metadata = {"channel_id": str(container.get("channel_id") or "")}
        form = deny_modal(request.id, request.account_name, request.requester_slack_id, metadata)
        try:
            services.slack.open_view(body["trigger_id"], form)
        except SlackError as error:
            return f":warning: Slack did not open the form ({error.code}); click Deny again."
        return None

    def _resend_invite(self, click: DecisionClick, _body: dict[str, Any]) -> str | None:
        result = InviteFollowUp(self.services, batch=1).resend(click.request_id, click.user_id)
        return (":white_check_mark: " if result.ok else ":warning: ") + result.message

    def _retry_invite(self, click: DecisionClick, _body: dict[str, Any]) -> str | None:
        result = self.services.decisions.retry_invite(click.request_id, click.user_id)
        return None if result.ok else f":warning: {result.message}"
