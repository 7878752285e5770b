"""The 2FA nudge (SPEC §13): a new member whose Cloudflare user has no two-factor authentication is
told, once, how to turn it on (and that the account requires it, when its settings say so).

Called right after an acceptance is announced; acceptance happens once (a conditional update), so
the nudge does too. It costs two GETs: the member (its user's 2FA flag) and the account (its
`settings.enforce_twofactor`). A failed read skips the nudge rather than guess.
"""

from __future__ import annotations

import logging

from bot.access.audit import AuditEventType
from bot.access.notifier import Delivery
from bot.access.services import Services
from bot.cloudflare.errors import CloudflareError
from bot.slack.formatting import escape, mention
from storage.models import AccessRequest

log = logging.getLogger(__name__)
HOW_TO = (
    "In the Cloudflare dashboard open *My Profile → Authentication* and turn on *Two-Factor Authentication* "
    "(a security key, or an authenticator app), then keep the backup codes somewhere safe."
)


_HOW_IT_WENT = {
    Delivery.SENT: "they were told how to turn it on",
    Delivery.REFUSED: "the DM telling them how to turn it on failed",
    Delivery.UNCONFIRMED: "Slack did not confirm the DM telling them how to turn it on",
}


def nudge_two_factor(services: Services, request: AccessRequest) -> bool:
    """True when the requester was told to turn 2FA on."""
    member_id = request.cloudflare_member_id
    if not member_id:
        return False
    try:
        member = services.cloudflare.get_member(request.account_id, member_id)
    except CloudflareError as error:
        log.warning("could not read the new member of #%s to check 2FA: %s", request.id, error)
        return False
    if member.user.two_factor_authentication_enabled:
        return False
    try:
        enforced = services.cloudflare.get_account(request.account_id).settings.enforce_twofactor
    except CloudflareError as error:
        log.warning("could not read the settings of %s: %s", request.account_id, error)
        enforced = False
    account = escape(request.account_name)
    required = (
        f" *{account} requires it*: Cloudflare will ask you to set it up before you can use the account."
        if enforced
        else ""
    )
    delivery = services.notifier.deliver(
        request.requester_slack_id,
        f":closed_lock_with_key: Your Cloudflare login ({escape(request.requester_email)}) has no two-factor "
        f"authentication yet.{required} {HOW_TO}",
    )
    services.notifier.reply(
        request.id,
        f":closed_lock_with_key: {mention(request.requester_slack_id)} has no two-factor authentication on "
        f"Cloudflare yet{' (this account requires it)' if enforced else ''}; {_HOW_IT_WENT[delivery]}.",
    )
    told = delivery is Delivery.SENT
    with services.db.session() as session:
        services.audit.record(
            session,
            AuditEventType.TWO_FACTOR_NUDGED,
            request_id=request.id,
            cloudflare_member_id=member_id,
            account_enforces_two_factor=enforced,
            delivered=told if delivery is not Delivery.UNCONFIRMED else None,  # None: Slack did not say
        )
    return told
