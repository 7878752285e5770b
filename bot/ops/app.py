"""Builds the Bolt app: listeners registered, work after the ack run on our tracked pool."""

from __future__ import annotations

import logging

from slack_bolt import App

from bot.access.services import Services
from bot.slack.transport import PooledWebClient, pooled_context_middleware

log = logging.getLogger(__name__)


def build_bolt_app(services: Services, *, socket_mode: bool = False) -> App:
    from handlers import register

    secret = services.settings.slack_signing_secret
    app = App(
        client=services.slack.client,
        signing_secret=secret.get_secret_value() if secret else ("unused-in-socket-mode" if socket_mode else None),
        token_verification_enabled=False,
        request_verification_enabled=not socket_mode,
        # Listeners ack and hand their work to our pools, so Bolt can answer as each returns,
        # instead of polling for the ack every 10 ms from a second thread.
        process_before_response=True,
        listener_executor=services.listener_executor,
        logger=logging.getLogger("slack_bolt.App"),
        name="cf-access-bot",
    )
    client = services.slack.client
    if isinstance(client, PooledWebClient):
        # Listeners' `respond` and `client` share the process's keep-alive pool to Slack too.
        app.use(pooled_context_middleware(client))
    register(app, services)
    return app
