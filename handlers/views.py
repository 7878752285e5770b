"""The request modal (account → roles refresh, submission) and the deny-with-reason modal."""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt import Ack

from bot.access.decisions import already_decided
from bot.access.filing import Refusal, filed_message
from bot.access.services import Services
from bot.cloudflare.models import Account, Role
from bot.slack.gateway import SlackProfile
from bot.slack.ids import Block
from bot.slack.modals import request_modal
from handlers.common import failure_text, run_after_ack
from handlers.payloads import RequestForm, deny_reason, private_metadata, request_form
from storage.repository import get_request
from storage.states import RequestStatus

log = logging.getLogger(__name__)


class ViewHandlers:
    def __init__(self, services: Services) -> None:
        self.services = services

    def on_account_selected(self, ack: Ack, body: dict[str, Any]) -> None:
        ack()
        run_after_ack(self.services, body, None, lambda: self._account_selected(body))

    def _account_selected(self, body: dict[str, Any]) -> None:
        """Redraw the modal with the chosen account's requestable roles."""
        view = body["view"]
        account_id = body["actions"][0]["selected_option"]["value"]
        directory = self.services.directory
        accounts = directory.accounts()
        account = next((a for a in accounts if a.id == account_id), None)
        roles = directory.requestable_roles(account_id) if account else []
        metadata = private_metadata(view)
        updated = request_modal(
            accounts=accounts,
            selected_account=account,
            roles=roles,
            email=metadata.get("email") or None,
            metadata=metadata,
        )
        self.services.slack.update_view(view["id"], updated, view_hash=view.get("hash"))

    def on_request_submitted(self, ack: Ack, body: dict[str, Any], view: dict[str, Any]) -> None:
        """Field errors come back inside the modal; the rest is done after the ack and told by DM."""
        services = self.services
        user_id = body["user"]["id"]
        form = request_form(view)
        if form.account_id and not services.directory.is_warm(form.account_id):
            # Checking the fields would mean asking Cloudflare before the ack: check after, tell by DM.
            ack()
            run_after_ack(services, body, None, lambda: self._file_unchecked(user_id, form))
            return
        try:
            if not form.account_id:
                raise Refusal("Choose an account.", field=Block.ACCOUNT.value)
            account = services.directory.account(form.account_id)
            if account is None:
                raise Refusal("That account can no longer be requested; choose another.", field=Block.ACCOUNT.value)
            if not form.role_ids:
                raise Refusal("Choose at least one role.", field="roles")
            # Every role of the account, so that check_fields names a role that is not requestable.
            roles_by_id = {role.id: role for role in services.directory.roles(account.id)}
            roles = [roles_by_id[role_id] for role_id in form.role_ids if role_id in roles_by_id]
            if len(roles) != len(form.role_ids):
                raise Refusal("A chosen role no longer exists in this account; choose again.", field="roles")
            profile = services.filing.requester(user_id)
            services.filing.check_fields(profile, account, roles, form.reason)
        except Refusal as refusal:
            field_blocks = {
                "roles": form.roles_block_id or Block.ACCOUNT.value,
                "reason": Block.REASON.value,
            }
            # A refusal about the person (no e-mail, domain) shows under the first field.
            block_id = field_blocks.get(refusal.field or "", Block.ACCOUNT.value)
            ack(response_action="errors", errors={block_id: refusal.message})
            return
        except Exception as error:
            ack(response_action="errors", errors={Block.REASON.value: failure_text(error)})
            return
        ack()
        run_after_ack(services, body, None, lambda: self._file(user_id, profile, account, roles, form.reason))

    def _file_unchecked(self, user_id: str, form: RequestForm) -> None:
        services = self.services
        try:
            account = services.directory.account(form.account_id or "")
            if account is None:
                raise Refusal("that account can no longer be requested.")
            roles_by_id = {role.id: role for role in services.directory.roles(account.id)}
            roles = [roles_by_id[role_id] for role_id in form.role_ids if role_id in roles_by_id]
            if not roles or len(roles) != len(form.role_ids):
                raise Refusal("a chosen role no longer exists in this account; open the form again.")
            profile = services.filing.requester(user_id)
        except Refusal as refusal:
            services.notifier.tell(user_id, f":warning: Your request was not filed: {refusal.message}")
            return
        except Exception as error:
            services.notifier.tell(user_id, failure_text(error))
            return
        self._file(user_id, profile, account, roles, form.reason)

    def _file(self, user_id: str, profile: SlackProfile, account: Account, roles: list[Role], reason: str) -> None:
        services = self.services
        try:
            filed = services.filing.file(profile, account, roles, reason)
            services.notifier.tell(user_id, ":white_check_mark: " + filed_message(filed))
        except Refusal as refusal:
            services.notifier.tell(user_id, f":warning: Your request was not filed: {refusal.message}")
        except Exception as error:
            services.notifier.tell(user_id, failure_text(error))

    def on_deny_submitted(self, ack: Ack, body: dict[str, Any], view: dict[str, Any]) -> None:
        services = self.services
        user_id = body["user"]["id"]
        metadata = private_metadata(view)
        request_id = int(metadata.get("request_id", "0") or 0)
        with services.db.session() as session:
            request = get_request(session, request_id)
        if request is None or request.status != RequestStatus.PENDING.value:
            message = already_decided(request) if request else "This request no longer exists."
            ack(response_action="errors", errors={Block.DENY_REASON.value: message})
            return
        ack()
        run_after_ack(services, body, None, lambda: self._deny(request_id, user_id, view, metadata))

    def _deny(self, request_id: int, user_id: str, view: dict[str, Any], metadata: dict[str, str]) -> None:
        services = self.services
        result = services.decisions.deny(request_id, user_id, deny_reason(view))
        if not result.ok:
            channel_id = metadata.get("channel_id")
            text = f":warning: {result.message}"
            if channel_id:
                try:
                    services.slack.ephemeral(channel_id, user_id, text)
                    return
                except Exception:
                    log.warning("could not post an ephemeral to %s", user_id)
            services.notifier.tell(user_id, text)
