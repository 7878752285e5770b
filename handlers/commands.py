"""`/cf-access`: ack at once, then do the work and answer through the response_url."""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt import Ack, Respond

from bot.access.access_model import AccessModel
from bot.access.filing import Refusal, filed_message
from bot.access.services import Services
from bot.core.durations import format_duration
from bot.slack.command_text import USAGE, ParsedCommand, parse_command, parse_request_id, parse_request_tail
from bot.slack.formatting import escape, number, scope_text, shown_roles
from bot.slack.gateway import SlackError
from bot.slack.messages import STATUS_LABEL, term_text
from bot.slack.modals import loading_modal, request_modal
from handlers.common import failure_text, form_durations, run_after_ack, run_at_once, tell_actor
from storage.repository import pending_for_accounts, requests_of
from storage.states import RequestStatus

log = logging.getLogger(__name__)


class CommandHandlers:
    def __init__(self, services: Services) -> None:
        self.services = services

    def on_command(self, ack: Ack, command: dict[str, Any], respond: Respond) -> None:
        parsed = parse_command(command.get("text", ""))
        user_id = command["user_id"]
        if parsed.name == "help":
            ack(text=(f":warning: {parsed.error}\n\n" if parsed.error else "") + USAGE, response_type="ephemeral")
            return
        if parsed.name == "status":
            ack(text=self.status_text(user_id), response_type="ephemeral")
            return
        ack()
        if parsed.name == "request" and not parsed.args:
            run_at_once(self.services, command, respond, lambda: self.open_modal(command, respond))
            return
        run_after_ack(self.services, command, respond, lambda: self._run(parsed, command, respond))

    def _run(self, parsed: ParsedCommand, command: dict[str, Any], respond: Respond) -> None:
        """Work out the answer, then deliver it: a reply Slack does not take (the response_url
        expired or failed) must not read as the command failing, since it may have filed or
        cancelled a request; `tell_actor` falls back to an ephemeral or a DM."""
        try:
            text = self._answer(parsed, command)
        except Refusal as refusal:
            text = f":warning: {refusal.message}"
        except Exception as error:
            text = failure_text(error)
        tell_actor(self.services, command, respond, text)

    def _answer(self, parsed: ParsedCommand, command: dict[str, Any]) -> str:
        user_id = command["user_id"]
        match parsed.name:
            case "request":
                return self.quick_request(user_id, parsed)
            case "accounts":
                return self.accounts_text()
            case "roles":
                return self.roles_text(parsed)
            case "pending":
                return self.pending_text(user_id)
            case "cancel":
                return self.cancel_text(user_id, parsed)
        return USAGE

    # --- request --------------------------------------------------------------------------

    def open_modal(self, command: dict[str, Any], respond: Respond) -> None:
        """Spend the trigger at once, on the listener pool (it lasts 3 s and is good once); the form
        is filled in on the work pool with `views.update` when the profile and accounts are in."""
        services = self.services
        try:
            view_id, view_hash = services.slack.open_view(command["trigger_id"], loading_modal())
        except SlackError as error:
            tell_actor(services, command, respond, failure_text(error))
            return
        run_after_ack(services, command, respond, lambda: self._fill_modal(command, view_id, view_hash))

    def _fill_modal(self, command: dict[str, Any], view_id: str, view_hash: str) -> None:
        services = self.services
        try:
            profile = services.slack.profile(command["user_id"])
            accounts = services.directory.accounts()
        except Exception as error:
            services.slack.update_view(view_id, loading_modal(failure_text(error)))
            return
        metadata = {"channel_id": command.get("channel_id", ""), "email": profile.email or ""}
        view = request_modal(
            accounts=accounts,
            selected_account=None,
            roles=[],
            email=profile.email,
            metadata=metadata,
            **form_durations(services.settings),
        )
        services.slack.update_view(view_id, view, view_hash=view_hash)

    def quick_request(self, user_id: str, parsed: ParsedCommand) -> str:
        tail = parse_request_tail(parsed.rest)
        if len(parsed.args) < 2 or not tail.reason:
            raise Refusal(
                "Usage: `/cf-access request ACCOUNT ROLE[,ROLE...] [on ZONE[,ZONE...]] [for DURATION] REASON`, e.g. "
                '`/cf-access request "Orange Cloud" DNS for 3d rotating the zone\'s records`. '
                + ("The reason is missing." if len(parsed.args) == 2 else "")
            )
        filing = self.services.filing
        account = filing.resolve_account(parsed.args[0])
        roles = filing.resolve_roles(account, parsed.args[1])
        zones = filing.resolve_zones(account, tail.zones)
        filing.check_scope(account, roles, len(zones))
        duration = filing.resolve_duration(tail.duration)
        profile = filing.requester(user_id)
        filed = filing.file(profile, account, roles, tail.reason, duration, zones=zones)
        return ":white_check_mark: " + filed_message(filed)

    # --- listings -----------------------------------------------------------------------------

    def accounts_text(self) -> str:
        accounts = self.services.directory.accounts()
        if not accounts:
            return "No Cloudflare account can be requested. Ask your Slack admin to check `cf-access-bot check`."
        lines = [f"• *{escape(account.name)}*  `{account.id}`" for account in accounts[:100]]
        return (
            "*Requestable Cloudflare accounts*\n"
            + "\n".join(lines)
            + "\nSee an account's roles with `/cf-access roles ACCOUNT`."
        )

    def roles_text(self, parsed: ParsedCommand) -> str:
        if not parsed.args:
            raise Refusal("Usage: `/cf-access roles ACCOUNT` (an account id or name).")
        account = self.services.filing.resolve_account(parsed.args[0])
        directory = self.services.directory
        policies = directory.access(account.id).model is AccessModel.POLICIES
        roles = directory.requestable(account.id)
        if not roles:
            return f"No role of *{escape(account.name)}* may be requested through Slack."
        if not policies:
            lines = [f"• *{escape(role.name)}*: {escape(role.description) or '_no description_'}" for role in roles]
            return f"*Requestable roles on {escape(account.name)}*\n" + "\n".join(lines)
        lines = [
            f"• *{escape(role.name)}* (`{escape(role.label or role.id)}`"
            f"{', zones only' if not role.account_scopable else ', whole account or zones' if role.zone_scopable else ''}): "
            f"{escape(role.description) or '_no description_'}"
            for role in roles
        ]
        return (
            f"*Requestable permission groups on {escape(account.name)}* (Cloudflare permission policies; "
            "scope a request to zones with `on example.com`)\n" + "\n".join(lines)
        )

    def status_text(self, user_id: str) -> str:
        with self.services.db.session() as session:
            requests = list(requests_of(session, user_id, limit=20))
        if not requests:
            return "You have no access requests. Start one with `/cf-access`."
        now = self.services.clock.now()
        lines = []
        for request in requests:
            label = STATUS_LABEL[RequestStatus(request.status)]
            granted = request.granted_role_names or request.requested_role_names
            lines.append(
                f"• *{number(request.id)}* {escape(request.account_name)}: {shown_roles(granted)} on the "
                f"{scope_text(request.zone_names)}: {label}, "
                f"access for {term_text(request)} (filed {format_duration(now - request.created_at)} ago)"
            )
        return "*Your access requests*\n" + "\n".join(lines)

    def pending_text(self, user_id: str) -> str:
        services = self.services
        with services.db.session() as session:
            candidates = list(
                pending_for_accounts(session, [account.id for account in services.directory.accounts()], limit=200)
            )
        approvable = set(
            services.directory.accounts_approved_by(user_id, sorted({request.account_id for request in candidates}))
        )
        mine = [request for request in candidates if request.account_id in approvable]
        if not mine:
            return "Nothing is waiting for your decision."
        now = services.clock.now()
        lines = [
            f"• *{number(request.id)}* <@{request.requester_slack_id}> asks for "
            f"{shown_roles(request.requested_role_names)} on *{escape(request.account_name)}* "
            f"({scope_text(request.zone_names)}) for {term_text(request)} ({format_duration(now - request.created_at)} ago): "
            f"{escape(request.reason[:150])}"
            for request in mine[:50]
        ]
        return (
            "*Requests waiting for your decision* (decide in each request's thread or in the Home tab)\n"
            + "\n".join(lines)
        )

    def cancel_text(self, user_id: str, parsed: ParsedCommand) -> str:
        request_id = parse_request_id(parsed.args[0]) if parsed.args else None
        if request_id is None:
            raise Refusal("Usage: `/cf-access cancel ID`, e.g. `/cf-access cancel 42` (see `/cf-access status`).")
        result = self.services.decisions.cancel(request_id, user_id)
        return (":white_check_mark: " if result.ok else ":warning: ") + result.message
