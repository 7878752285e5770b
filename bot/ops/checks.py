"""`cf-access-bot check`: is everything the bot depends on configured and reachable?"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from slack_sdk.errors import SlackApiError

from bot.access.services import Services
from bot.cloudflare.errors import CloudflareAuthError, CloudflareError
from bot.slack.formatting import role_list


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    detail: str


def _run(name: str, probe: Callable[[], str]) -> CheckResult:
    try:
        return CheckResult(name, True, probe())
    except SlackApiError as error:
        return CheckResult(name, False, f"Slack error: {error.response.get('error')}")
    except CloudflareError as error:
        return CheckResult(name, False, f"Cloudflare error: {error}")
    except Exception as error:
        return CheckResult(name, False, f"{type(error).__name__}: {error}")


def run_checks(services: Services) -> list[CheckResult]:
    settings = services.settings
    results = [_run("Slack auth.test", lambda: _slack_auth(services))]
    results.append(_run("Cloudflare credentials", lambda: _cloudflare_auth(services)))
    accounts_result = _run("Cloudflare accounts", lambda: _accounts(services))
    results.append(accounts_result)
    if not accounts_result.ok:
        return results
    for account in services.directory.accounts():
        results.append(_run(f"roles: {account.name}", partial(_roles, services, account.id)))
        results.append(_run(f"approvers: {account.name}", partial(_approvers, services, account.id)))
    if settings.approval_channel:
        results.append(CheckResult("approval channel", True, f"requests go to {settings.approval_channel}"))
    else:
        results.append(CheckResult("approval channel", True, "unset: each approver gets a DM"))
    return results


def _slack_auth(services: Services) -> str:
    response = services.slack.client.auth_test()
    return f"bot {response.get('user')} in team {response.get('team')}"


def _cloudflare_auth(services: Services) -> str:
    client = services.cloudflare
    if services.settings.cloudflare_api_token is None:
        user = client.get_user()
        return f"API key of {user.get('email', 'unknown user')}"
    try:
        status = client.verify_token()
    except CloudflareAuthError:
        # Account-owned tokens verify only per account.
        account_ids = services.settings.cloudflare_account_ids
        if not account_ids:
            raise
        status = client.verify_token(account_ids[0])
    if status.status != "active":
        raise CloudflareError(f"token status is {status.status}")
    return "API token is active"


def _accounts(services: Services) -> str:
    accounts = services.directory.accounts()
    if not accounts:
        raise CloudflareError("no account is visible to these credentials")
    missing = set(services.settings.cloudflare_account_ids) - {account.id for account in accounts}
    if missing:
        raise CloudflareError(f"not visible: {', '.join(sorted(missing))}")
    return ", ".join(account.name for account in accounts)


def _roles(services: Services, account_id: str) -> str:
    access = services.directory.access(account_id)
    model = access.model
    kind = "permission group" if model.value == "policies" else "role"
    requestable = services.directory.requestable(account_id)
    if not requestable:
        raise CloudflareError(f"no requestable {kind} (check REQUESTABLE_ROLES)")
    if not services.directory.super_admin_ids(account_id):
        raise CloudflareError(f"no Super Administrator {kind} visible")
    # A token that may not read permission groups keeps `auto` on legacy roles without a word: say so.
    why = f" (auto: {access.fallback_reason})" if access.fallback_reason else ""
    return f"{model.value}{why}: {len(requestable)} requestable: {role_list(role.name for role in requestable[:6])}" + (
        ", …" if len(requestable) > 6 else ""
    )


def _approvers(services: Services, account_id: str) -> str:
    approvers = services.directory.approvers(account_id)
    if not approvers:
        raise RuntimeError("no Super Administrator found in Slack by e-mail and no FALLBACK_APPROVERS")
    fallback = all(approver.email is None for approver in approvers)
    names = ", ".join(approver.email or approver.slack_id for approver in approvers)
    return f"{'fallback ' if fallback else ''}{names}"


def format_table(results: list[CheckResult]) -> str:
    width = max(len(result.name) for result in results)
    lines = [f"{'CHECK'.ljust(width)}  RESULT  DETAIL"]
    for result in results:
        lines.append(f"{result.name.ljust(width)}  {'ok    ' if result.ok else 'FAILED'}  {result.detail}")
    return "\n".join(lines)
