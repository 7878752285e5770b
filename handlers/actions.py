"""Buttons and selects on request messages (thread roots and the Home tab)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from slack_bolt import Ack, Respond

from bot.access.decisions import already_decided
from bot.access.invite_followup import InviteFollowUp
from bot.access.services import Services
from bot.access.terms import duration_choices, from_seconds
from bot.slack.formatting import slack_date
from bot.slack.gateway import SlackError
from bot.slack.modals import deny_modal, extension_modal, revoke_modal
from handlers.common import reply_address, run_after_ack, run_at_once, tell_actor
from handlers.payloads import DecisionClick, click_parts, decision_click
from storage.repository import get_request
from storage.states import RequestStatus

log = logging.getLogger(__name__)


class ActionHandlers:
    def __init__(self, services: Services) -> None:
        self.services = services

    def on_role_pick(self, ack: Ack) -> None:
        """A picker's own event (roles, duration); its value is read from `state` when Approve is clicked."""
        ack()

    def on_approve(self, ack: Ack, body: dict[str, Any], respond: Respond) -> None:
        self._on_click(ack, body, respond, self._approve)

    def on_deny(self, ack: Ack, body: dict[str, Any], respond: Respond) -> None:
        """Open the reason form at once, on the listener pool, while the trigger is fresh: no
        Cloudflare or Slack look-up first. Who may deny is checked when the form is submitted."""
        ack()
        self._open_form(body, respond, self._open_deny_form)

    def _open_form(
        self,
        body: dict[str, Any],
        respond: Respond,
        open_form: Callable[[DecisionClick, dict[str, Any]], str | None],
    ) -> None:
        """Open a button's form on the listener pool (the trigger lasts 3 s); say why when it cannot."""

        def work() -> None:
            click = decision_click(body)
            said = open_form(click, body) if click else ":warning: That button's payload was not understood."
            if said:
                tell_actor(self.services, body, respond, said)

        run_at_once(self.services, body, respond, work)

    def on_resend_invite(self, ack: Ack, body: dict[str, Any], respond: Respond) -> None:
        self._on_click(ack, body, respond, self._resend_invite)

    def on_retry_invite(self, ack: Ack, body: dict[str, Any], respond: Respond) -> None:
        self._on_click(ack, body, respond, self._retry_invite)

    def _on_click(
        self,
        ack: Ack,
        body: dict[str, Any],
        respond: Respond,
        handle: Callable[[DecisionClick], str | None],
    ) -> None:
        """Ack, then on the work pool: read the click, act, and tell the clicker what `handle` returns.

        The queue keeps only what the click is read from and where to answer: a click's payload
        carries the whole message (hundreds of objects), and a burst of clicks queued whole kept
        them alive for the garbage collector to walk, in passes that stop every thread, acks
        included. It is read on the pool, so a payload it cannot read is answered, not an error.
        """
        ack()
        clicked = click_parts(body)
        address = reply_address(body)

        def work() -> None:
            click = decision_click(clicked)
            said = handle(click) if click else ":warning: That button's payload was not understood; nothing changed."
            if said:
                tell_actor(self.services, address, respond, said)

        run_after_ack(self.services, address, respond, work)

    def _approve(self, click: DecisionClick) -> str | None:
        result = self.services.decisions.approve(
            click.request_id, click.user_id, click.granted_role_ids, click.granted_duration_s
        )
        return None if result.ok else f":warning: {result.message}"

    def on_revoke(self, ack: Ack, body: dict[str, Any], respond: Respond) -> None:
        """Like Deny: the reason form opens at once; who may revoke is checked when it is submitted."""
        ack()
        self._open_form(body, respond, self._open_revoke_form)

    def _open_revoke_form(self, click: DecisionClick, body: dict[str, Any]) -> str | None:
        with self.services.db.session() as session:
            request = get_request(session, click.request_id)
        if request is None or request.status not in (RequestStatus.INVITED.value, RequestStatus.ACCEPTED.value):
            state = request.status if request else "gone"
            return f":warning: Request #{click.request_id} is {state}; it holds no access to revoke."
        metadata = {"channel_id": str((body.get("container") or {}).get("channel_id") or "")}
        form = revoke_modal(request.id, request.account_name, request.requester_slack_id, metadata)
        try:
            self.services.slack.open_view(body["trigger_id"], form)
        except SlackError as error:
            return f":warning: Slack did not open the form ({error.code}); click Revoke access again."
        return None

    def on_request_extension(self, ack: Ack, body: dict[str, Any], respond: Respond) -> None:
        """The holder's button in the end warning: the form (duration, reason) opens at once."""
        ack()
        self._open_form(body, respond, self._open_extension_form)

    def _open_extension_form(self, click: DecisionClick, body: dict[str, Any]) -> str | None:
        services = self.services
        with services.db.session() as session:
            request = get_request(session, click.request_id)
        if request is None or request.requester_slack_id != click.user_id:
            return f":warning: You hold no access through #{click.request_id}."
        if request.status != RequestStatus.ACCEPTED.value or request.access_ends_at is None:
            return f":warning: Request #{request.id} is {request.status}; only an accepted, time-bound grant can be extended."
        choices = duration_choices(services.settings, from_seconds(request.granted_duration_s))
        form = extension_modal(
            request.id,
            request.account_name,
            slack_date(request.access_ends_at),
            choices,
            from_seconds(request.granted_duration_s),
        )
        try:
            services.slack.open_view(body["trigger_id"], form)
        except SlackError as error:
            return f":warning: Slack did not open the form ({error.code}); click Request extension again."
        return None

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

    def _resend_invite(self, click: DecisionClick) -> str | None:
        result = InviteFollowUp(self.services, batch=1).resend(click.request_id, click.user_id)
        return (":white_check_mark: " if result.ok else ":warning: ") + result.message

    def _retry_invite(self, click: DecisionClick) -> str | None:
        result = self.services.decisions.retry_invite(click.request_id, click.user_id)
        return None if result.ok else f":warning: {result.message}"
