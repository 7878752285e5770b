"""Slack listeners: thin functions that parse Slack's payloads, call the domain, and answer."""

from __future__ import annotations

from slack_bolt import App

from bot.access.services import Services
from bot.slack.ids import COMMAND, Action, Callback
from handlers.actions import ActionHandlers
from handlers.commands import CommandHandlers
from handlers.events import EventHandlers
from handlers.views import ViewHandlers


def register(app: App, services: Services) -> None:
    commands = CommandHandlers(services)
    actions = ActionHandlers(services)
    views = ViewHandlers(services)
    events = EventHandlers(services)

    app.command(COMMAND)(commands.on_command)

    app.action(Action.GRANT_ROLES.value)(actions.on_role_pick)
    app.action(Action.APPROVE.value)(actions.on_approve)
    app.action(Action.DENY.value)(actions.on_deny)
    app.action(Action.RETRY_INVITE.value)(actions.on_retry_invite)
    app.action(Action.RESEND_INVITE.value)(actions.on_resend_invite)
    app.action(Action.MODAL_ACCOUNT.value)(views.on_account_selected)
    app.action(Action.MODAL_ROLES.value)(actions.on_role_pick)
    app.action(Action.GRANT_DURATION.value)(actions.on_role_pick)
    app.action(Action.MODAL_DURATION.value)(actions.on_role_pick)
    app.action(Action.REVOKE_ACCESS.value)(actions.on_revoke)
    app.action(Action.REQUEST_EXTENSION.value)(actions.on_request_extension)

    app.action(Action.MODAL_ZONES.value)(actions.on_role_pick)
    # The zone search of the request form: Slack's options requests (`block_suggestion`).
    app.options(Action.MODAL_ZONES.value)(views.on_zone_options)

    app.view_submission(Callback.REQUEST_MODAL.value)(views.on_request_submitted)
    app.view_submission(Callback.DENY_MODAL.value)(views.on_deny_submitted)
    app.view_submission(Callback.REVOKE_MODAL.value)(views.on_revoke_submitted)
    app.view_submission(Callback.EXTENSION_MODAL.value)(views.on_extension_submitted)

    app.event("app_home_opened")(events.on_home_opened)
    app.event("user_change")(events.on_user_change)
