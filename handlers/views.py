"""The request modal (account → roles refresh, submission) and the deny-with-reason modal."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from slack_bolt import Ack

from bot.access.access_model import AccessModel, Grantable
from bot.access.decisions import already_decided
from bot.access.filing import Refusal, filed_message, has_visible_text
from bot.access.grants import Grants
from bot.access.scope import MAX_ZONES
from bot.access.services import Services
from bot.access.terms import DEFAULT, DurationRefused, Requested, effective_duration
from bot.cloudflare.models import Account, Zone
from bot.slack.formatting import escape
from bot.slack.gateway import SlackError, SlackProfile
from bot.slack.ids import Block
from bot.slack.modals import request_modal, zone_options
from handlers.common import failure_text, form_durations, run_after_ack
from handlers.payloads import (
    ExtensionForm,
    RequestForm,
    deny_reason,
    extension_form,
    form_duration,
    private_metadata,
    request_form,
    revoke_reason,
    zone_query,
)
from storage.models import AccessRequest
from storage.repository import get_request
from storage.states import RequestStatus

log = logging.getLogger(__name__)
#: Seconds an options request may wait for a cold zone cache (Slack gives up after 3).
ZONE_WAIT = 2.0


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
        roles = directory.requestable(account_id) if account else []
        policies = account is not None and directory.access(account_id).model is AccessModel.POLICIES
        if policies:
            directory.warm_zones(account_id)  # the zone search answers from the cache, within Slack's 3 s
        metadata = private_metadata(view)
        updated = request_modal(
            accounts=accounts,
            selected_account=account,
            roles=roles,
            email=metadata.get("email") or None,
            metadata=metadata,
            max_zones=MAX_ZONES if policies else 0,
            **form_durations(self.services.settings),
        )
        self.services.slack.update_view(view["id"], updated, view_hash=view.get("hash"))

    def on_zone_options(self, ack: Ack, body: dict[str, Any]) -> None:
        """The form's zone search (`block_suggestion`): answered from the zone cache, by prefix, at
        most 100 options, and never slower than Slack waits (3 s): a cold cache answers what a load
        brings within ZONE_WAIT seconds, else nothing yet (the next keystroke finds them)."""
        query = zone_query(body)
        directory = self.services.directory
        try:
            known = query is not None and any(a.id == query.account_id for a in directory.accounts())
        except Exception:
            known = False
        zones = directory.zones_within(query.account_id, ZONE_WAIT) if query is not None and known else None
        if query is None or not zones:
            ack(options=[])
            return
        typed = query.typed.strip().lower().rstrip(".")
        starts = [zone for zone in zones if zone.name.lower().startswith(typed)]
        # Then names containing it (`shop` finds `eu.shop.example`), after the ones that start with it.
        contains = [zone for zone in zones if typed and typed in zone.name.lower() and zone not in starts]
        ack(options=zone_options([(zone.name, zone.id) for zone in [*starts, *contains]]))

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
            roles_by_id = {role.id: role for role in services.directory.grantables(account.id)}
            roles = [roles_by_id[role_id] for role_id in form.role_ids if role_id in roles_by_id]
            if len(roles) != len(form.role_ids):
                raise Refusal("A chosen role no longer exists in this account; choose again.", field="roles")
            duration = form_duration(form.duration_s)
            try:
                effective_duration(duration, services.settings)
            except DurationRefused as refused:
                raise Refusal(str(refused), field="duration") from None
            profile = services.filing.requester(user_id)
            # The zones themselves are checked after the ack (that may need Cloudflare); their count now.
            services.filing.check_fields(profile, account, roles, form.reason, len(set(form.zone_ids)))
        except Refusal as refusal:
            field_blocks = {
                "roles": form.roles_block_id or Block.ACCOUNT.value,
                "reason": Block.REASON.value,
                "duration": Block.DURATION.value,
                "zones": form.zones_block_id or form.roles_block_id or Block.ACCOUNT.value,
            }
            # A refusal about the person (no e-mail, domain) shows under the first field.
            block_id = field_blocks.get(refusal.field or "", Block.ACCOUNT.value)
            ack(response_action="errors", errors={block_id: refusal.message})
            return
        except Exception as error:
            ack(response_action="errors", errors={Block.REASON.value: failure_text(error)})
            return
        ack()
        run_after_ack(
            services,
            body,
            None,
            lambda: self._file(user_id, profile, account, roles, form.reason, duration, zone_ids=form.zone_ids),
        )

    def _file_unchecked(self, user_id: str, form: RequestForm) -> None:
        services = self.services
        try:
            account = services.directory.account(form.account_id or "")
            if account is None:
                raise Refusal("that account can no longer be requested.")
            roles_by_id = {role.id: role for role in services.directory.grantables(account.id)}
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
        self._file(
            user_id, profile, account, roles, form.reason, form_duration(form.duration_s), zone_ids=form.zone_ids
        )

    def _file(
        self,
        user_id: str,
        profile: SlackProfile,
        account: Account,
        roles: list[Grantable],
        reason: str,
        duration: Requested = DEFAULT,
        *,
        extends: AccessRequest | None = None,
        zone_ids: Sequence[str] = (),
        zones: Sequence[Zone] = (),
    ) -> None:
        services = self.services
        try:
            chosen = list(zones) or services.filing.zones_by_id(account, zone_ids)
            filed = services.filing.file(profile, account, roles, reason, duration, extends=extends, zones=chosen)
            services.notifier.tell(user_id, ":white_check_mark: " + filed_message(filed))
        except Refusal as refusal:
            services.notifier.tell(user_id, f":warning: Your request was not filed: {refusal.message}")
        except Exception as error:
            services.notifier.tell(user_id, failure_text(error))

    def on_revoke_submitted(self, ack: Ack, body: dict[str, Any], view: dict[str, Any]) -> None:
        """Who may revoke is confirmed after the ack (a Cloudflare read); the outcome is told to them."""
        ack()
        user_id = body["user"]["id"]
        metadata = private_metadata(view)
        request_id = int(metadata.get("request_id", "0") or 0)
        reason = revoke_reason(view)

        def revoke() -> None:
            outcome = Grants(self.services).revoke(request_id, user_id, reason)
            self._tell_modal_actor(user_id, metadata, ("" if outcome.ok else ":warning: ") + outcome.message)

        run_after_ack(self.services, body, None, revoke)

    def on_extension_submitted(self, ack: Ack, body: dict[str, Any], view: dict[str, Any]) -> None:
        services = self.services
        user_id = body["user"]["id"]
        form = extension_form(view)
        if form is None:
            ack(
                response_action="errors",
                errors={Block.REASON.value: "This form lost track of its request; open it again."},
            )
            return
        try:
            effective_duration(form_duration(form.duration_s), services.settings)
        except DurationRefused as refused:
            ack(response_action="errors", errors={Block.DURATION.value: str(refused)})
            return
        if not has_visible_text(form.reason):
            ack(response_action="errors", errors={Block.REASON.value: "Give a reason: approvers need to know why."})
            return
        ack()
        run_after_ack(services, body, None, lambda: self._file_extension(user_id, form))

    def _file_extension(self, user_id: str, form: ExtensionForm) -> None:
        services = self.services
        with services.db.session() as session:
            original = get_request(session, form.request_id)
        if (
            original is None
            or original.requester_slack_id != user_id
            or original.status != RequestStatus.ACCEPTED.value
        ):
            services.notifier.tell(user_id, f":warning: You hold no access through #{form.request_id} to extend.")
            return
        try:
            account = services.directory.account(original.account_id)
            if account is None:
                raise Refusal(f"{escape(original.account_name)} can no longer be requested through Slack.")
            roles_by_id = {role.id: role for role in services.directory.grantables(account.id)}
            roles = [roles_by_id[role_id] for role_id in original.granted_role_ids or [] if role_id in roles_by_id]
            profile = services.filing.requester(user_id)
            # The extension asks for more time on the same grant, scope included (no Cloudflare write).
            zones = [
                Zone(id=zone_id, name=name)
                for zone_id, name in zip(original.zone_ids or [], original.zone_names or [], strict=False)
            ]
        except Refusal as refusal:
            services.notifier.tell(user_id, f":warning: Your extension was not filed: {refusal.message}")
            return
        except Exception as error:
            services.notifier.tell(user_id, failure_text(error))
            return
        self._file(
            user_id, profile, account, roles, form.reason, form_duration(form.duration_s), extends=original, zones=zones
        )

    def _tell_modal_actor(self, user_id: str, metadata: dict[str, str], text: str) -> None:
        channel_id = metadata.get("channel_id")
        if channel_id:
            try:
                self.services.slack.ephemeral(channel_id, user_id, text)
                return
            except SlackError:
                log.warning("could not post an ephemeral to %s", user_id)
        self.services.notifier.tell(user_id, text)

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
