"""httpx client for the Cloudflare v4 endpoints the bot uses.

Reads (GET) are retried here on 5xx/timeouts because they are idempotent; the member POST is never
retried by the client: the invite outbox decides, after checking for an existing member.

With a `CloudflarePause` (the bot always has one, shared by the whole process) a 429 pauses every
call and is never slept on: calls during the pause fail fast with `CloudflarePaused`. Without one
(a client on its own) a read waits for `Retry-After` and tries again, as before.

With a `CloudflareBudget` (CLOUDFLARE_RATE_LIMIT, also one per process) every call takes a token
first: it waits briefly for its turn, or fails fast with `CloudflareBudgetSpent` (a kind of
`CloudflarePaused`) when the budget is spent for longer, so the bot never meets Cloudflare's limit.
"""

from __future__ import annotations

import contextlib
import logging
import random
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar
from urllib.parse import urlsplit
from urllib.request import getproxies

import httpx
from pydantic import BaseModel, SecretStr, ValidationError

from bot.cloudflare.errors import (
    CloudflareAuthError,
    CloudflareClientError,
    CloudflareError,
    CloudflareNotFound,
    CloudflareRateLimited,
    CloudflareServerError,
    CloudflareUnavailable,
    CloudflareUnreadable,
)
from bot.cloudflare.models import (
    Account,
    Envelope,
    Member,
    MemberUser,
    PermissionGroup,
    PolicySpec,
    ResourceGroup,
    Role,
    TokenStatus,
    Zone,
    account_scope_key,
    zone_scope_key,
)
from bot.cloudflare.pacing import CloudflareBudget, CloudflarePause
from bot.cloudflare.transport import KeepAliveTransport
from bot.core.priority import FOREGROUND

log = logging.getLogger(__name__)
ModelT = TypeVar("ModelT", bound=BaseModel)
#: Observes each call sent: (HTTP method, path, status or 0 when no answer came, seconds).
CallObserver = Callable[[str, str, int, float], None]
PER_PAGE = 50
# A listing longer than this is a server that never says "last page": stop rather than loop forever.
MAX_PAGES = 2000
_MAX_RETRY_AFTER = 60.0


class CloudflareCredentials:
    """Either an API token (Bearer) or the legacy e-mail + Global API Key."""

    def __init__(
        self, *, token: SecretStr | None = None, email: str | None = None, key: SecretStr | None = None
    ) -> None:
        if token is None and (email is None or key is None):
            raise ValueError("a Cloudflare API token, or an e-mail and API key, is required")
        self._token = token
        self._email = email
        self._key = key

    @property
    def uses_token(self) -> bool:
        return self._token is not None

    def headers(self) -> dict[str, str]:
        if self._token is not None:
            return {"Authorization": f"Bearer {self._token.get_secret_value()}"}
        assert self._email is not None and self._key is not None
        return {"X-Auth-Email": self._email, "X-Auth-Key": self._key.get_secret_value()}

    def __repr__(self) -> str:
        return "CloudflareCredentials(token)" if self._token else "CloudflareCredentials(email+key)"


class CloudflareClient:
    def __init__(
        self,
        *,
        base_url: str,
        credentials: CloudflareCredentials,
        timeout: float = 10.0,
        read_attempts: int = 3,
        sleep: Callable[[float], None] = time.sleep,
        transport: httpx.BaseTransport | None = None,
        pause: CloudflarePause | None = None,
        budget: CloudflareBudget | None = None,
        observe: CallObserver | None = None,
    ) -> None:
        # One keep-alive pool for the process: a burst of approvals reuses a few connections
        # (in production, a few TLS handshakes instead of one per call). `limits` apply to httpx's
        # own transport, used only behind a proxy.
        self._http = httpx.Client(
            base_url=base_url.rstrip("/"),
            headers={**credentials.headers(), "User-Agent": "cf-access-bot"},
            timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)),
            transport=transport if transport is not None else pooled_transport(base_url),
            limits=httpx.Limits(max_connections=32, max_keepalive_connections=16, keepalive_expiry=30.0),
        )
        self._credentials = credentials
        self._read_attempts = read_attempts
        self._sleep = sleep
        self._pause = pause
        self._budget = budget
        self._observe = observe

    @property
    def pause(self) -> CloudflarePause | None:
        """The process-wide pause every call of this client checks first, if any."""
        return self._pause

    def close(self) -> None:
        self._http.close()

    # --- accounts and roles -------------------------------------------------------------------

    def list_accounts(self) -> list[Account]:
        return list(self._paged("/accounts", Account))

    def get_account(self, account_id: str) -> Account:
        return Account.model_validate(self._get(f"/accounts/{account_id}").result)

    def list_roles(self, account_id: str) -> list[Role]:
        return list(self._paged(f"/accounts/{account_id}/roles", Role))

    # --- members -------------------------------------------------------------------------------

    def list_members(self, account_id: str, *, status: str | None = None) -> list[Member]:
        params = {"status": status} if status else {}
        return list(self._paged(f"/accounts/{account_id}/members", Member, params))

    def get_member(self, account_id: str, member_id: str) -> Member:
        return Member.model_validate(self._get(f"/accounts/{account_id}/members/{member_id}").result)

    def create_member(
        self,
        account_id: str,
        *,
        email: str,
        role_ids: list[str] | None = None,
        policies: list[PolicySpec] | None = None,
    ) -> Member:
        """Invite `email` with roles (legacy model) or policies, never both (Cloudflare's `oneOf`).
        Not retried here: a retry could invite twice.

        Only the member id is read from the answer (Cloudflare's answer may omit `roles`); without
        an id the call is ambiguous and the caller re-reads the member list before anything else.
        """
        access = _access_body(role_ids, policies, roles_as_objects=False)
        envelope = self._send("POST", f"/accounts/{account_id}/members", json={"email": email, **access})
        result = envelope.result if isinstance(envelope.result, dict) else {}
        member_id = result.get("id")
        if not isinstance(member_id, str) or not member_id:
            raise CloudflareUnreadable(f"Cloudflare accepted the invite for {account_id} but sent no member id")
        return Member(
            id=member_id,
            status=str(result.get("status") or "pending"),
            email=email,
            user=MemberUser(email=email),
            roles=[Role(id=role_id, name="") for role_id in role_ids or []],
            policies=[policy.as_policy() for policy in policies or []],
        )

    def update_member(
        self,
        account_id: str,
        member_id: str,
        *,
        role_ids: list[str] | None = None,
        policies: list[PolicySpec] | None = None,
    ) -> Member:
        """Replace a member's roles (sent as role objects, `[{"id": ...}]`) or policies, never both.

        The whole list is replaced, so the caller sends everything the member is to keep. A PUT is
        idempotent; it is still not retried here, so the caller decides after re-reading the member.
        """
        access = _access_body(role_ids, policies, roles_as_objects=True)
        envelope = self._send("PUT", f"/accounts/{account_id}/members/{member_id}", json=access)
        try:
            return Member.model_validate(envelope.result)
        except ValidationError:
            raise CloudflareUnreadable(f"Cloudflare updated member {member_id} but its answer cannot be read") from None

    def delete_member(self, account_id: str, member_id: str) -> None:
        self._send("DELETE", f"/accounts/{account_id}/members/{member_id}")

    # --- permission policies, resource groups, zones -------------------------------------------

    def list_permission_groups(self, account_id: str) -> list[PermissionGroup]:
        """404 where the account has no policies API (the caller then uses legacy roles)."""
        return list(self._paged(f"/accounts/{account_id}/iam/permission_groups", PermissionGroup))

    def list_resource_groups(self, account_id: str) -> list[ResourceGroup]:
        """One answer with every group: the 2026 schema pages this listing no more."""
        path = f"/accounts/{account_id}/iam/resource_groups"
        items = self._get(path).result
        if not isinstance(items, list):
            raise CloudflareUnreadable(f"expected a list from {path}, got {type(items).__name__}")
        groups = []
        for position, item in enumerate(items):
            try:
                groups.append(ResourceGroup.model_validate(item))
            except ValidationError as error:
                log.warning("skipped item %s of %s: %s", position, path, error.errors()[0]["msg"])
        return groups

    def create_resource_group(self, account_id: str, *, name: str, zone_ids: list[str]) -> ResourceGroup:
        """A resource group scoped to exactly these zones. Not retried: the caller lists before creating."""
        body = {
            "name": name,
            "scope": {
                "key": account_scope_key(account_id),
                "objects": [{"key": zone_scope_key(zone_id)} for zone_id in zone_ids],
            },
        }
        envelope = self._send("POST", f"/accounts/{account_id}/iam/resource_groups", json=body)
        try:
            return ResourceGroup.model_validate(envelope.result)
        except ValidationError:
            raise CloudflareUnreadable(f"Cloudflare created a resource group in {account_id} but sent no id") from None

    def find_zones(self, account_id: str, name: str) -> list[Zone]:
        """The account's zones called `name` (Cloudflare matches the name exactly)."""
        return list(self._paged("/zones", Zone, {"account.id": account_id, "name": name}))

    def list_zones(self, account_id: str) -> list[Zone]:
        return list(self._paged("/zones", Zone, {"account.id": account_id}))

    # --- tokens --------------------------------------------------------------------------------

    def verify_token(self, account_id: str | None = None) -> TokenStatus:
        """User tokens verify at /user/tokens/verify; account-owned tokens only per account."""
        path = f"/accounts/{account_id}/tokens/verify" if account_id else "/user/tokens/verify"
        return TokenStatus.model_validate(self._get(path).result)

    def get_user(self) -> dict[str, Any]:
        result = self._get("/user").result
        return result if isinstance(result, dict) else {}

    # --- transport -----------------------------------------------------------------------------

    def _paged(self, path: str, model: type[ModelT], params: dict[str, Any] | None = None) -> Iterator[ModelT]:
        """Every item of a listing: to `result_info.total_pages` when given, else to the first empty
        page (a short page is not the end: a server may answer fewer items than `per_page`).

        An item that cannot be read is skipped and logged; it never fails the whole listing.
        """
        for page in range(1, MAX_PAGES + 1):
            envelope = self._get(path, {**(params or {}), "page": page, "per_page": PER_PAGE})
            items = envelope.result if envelope.result is not None else []
            if not isinstance(items, list):
                raise CloudflareUnreadable(f"expected a list from {path}, got {type(items).__name__}")
            for position, item in enumerate(items):
                try:
                    yield model.model_validate(item)
                except ValidationError as error:
                    first = error.errors()[0]
                    where = ".".join(str(part) for part in first["loc"])
                    log.warning("skipped item %s of page %s of %s: %s: %s", position, page, path, where, first["msg"])
            total_pages = (envelope.result_info or {}).get("total_pages")
            if not items or (isinstance(total_pages, int) and page >= total_pages):
                return
        raise CloudflareUnreadable(f"{path} did not end after {MAX_PAGES} pages")

    def _get(self, path: str, params: dict[str, Any] | None = None) -> Envelope:
        attempt = 0
        while True:
            attempt += 1
            try:
                return self._send("GET", path, params=params)
            except CloudflareError as error:
                if not error.retryable or attempt >= self._read_attempts:
                    raise
                if isinstance(error, CloudflareRateLimited) and self._pause is not None:
                    raise  # the whole process is paused: fail fast, never sleep on a worker
                self._sleep(_retry_delay(error, attempt))

    def _send(self, method: str, path: str, *, params: dict[str, Any] | None = None, json: Any = None) -> Envelope:
        """One call: refused at once during the pause, paced by the budget, observed, parsed."""
        FOREGROUND.step_aside()
        if self._pause is not None:
            self._pause.check()
        with self._budget.spend() if self._budget is not None else contextlib.nullcontext():
            if self._pause is not None:
                self._pause.check()  # a 429 may have paused everyone while this call waited its turn
            started = time.perf_counter()
            try:
                response = self._http.request(method, path, params=params, json=json)
            except httpx.TimeoutException:
                self._observed(method, path, 0, started)
                raise CloudflareUnavailable(f"Cloudflare did not answer {method} {path} in time") from None
            except httpx.TransportError as error:
                self._observed(method, path, 0, started)
                raise CloudflareUnavailable(
                    f"connection to Cloudflare failed on {method} {path}: {type(error).__name__}"
                ) from None
        self._observed(method, path, response.status_code, started)
        # httpx binds a response's stream back to the response (to time it once closed): a
        # reference cycle per call, left to the cyclic collector, whose passes stop every thread.
        # The body is read and the stream closed by now, so the binding is let go of.
        response.stream = _READ
        try:
            return _parse(response)
        except CloudflareRateLimited as error:
            if self._pause is not None:
                resumes = self._pause.pause(error.retry_after)
                log.warning("Cloudflare answered 429 on %s %s; every call paused until %s", method, path, resumes)
            raise

    def _observed(self, method: str, path: str, status: int, started: float) -> None:
        if self._observe is not None:
            self._observe(method, path, status, time.perf_counter() - started)


def pooled_transport(base_url: str) -> KeepAliveTransport | None:
    """Cloudflare calls go over http.client's keep-alive connections, unless the environment names
    a proxy for the API's scheme: only httpx's own transport (None: httpx's choice) honours it."""
    scheme = urlsplit(base_url).scheme.lower()
    proxies = getproxies()
    if proxies.get(scheme) or proxies.get("all"):
        return None
    return KeepAliveTransport(max_idle=16, idle_expiry=30.0)


def _access_body(
    role_ids: list[str] | None, policies: list[PolicySpec] | None, *, roles_as_objects: bool
) -> dict[str, Any]:
    """`roles` xor `policies`: Cloudflare's member bodies take exactly one. POST takes bare role
    ids, PUT role objects."""
    if (role_ids is None) == (policies is None):
        raise ValueError("a member's access is given as roles or as policies, exactly one of them")
    if policies is not None:
        return {"policies": [policy.body() for policy in policies]}
    assert role_ids is not None
    return {"roles": [{"id": role_id} for role_id in role_ids] if roles_as_objects else list(role_ids)}


def _retry_delay(error: CloudflareError, attempt: int) -> float:
    if isinstance(error, CloudflareRateLimited) and error.retry_after is not None:
        return min(error.retry_after, _MAX_RETRY_AFTER)
    return backoff_delay(attempt)


def backoff_delay(attempt: int, *, base: float = 0.5, cap: float = 30.0) -> float:
    """Exponential backoff with full jitter."""
    return random.uniform(0, min(cap, base * 2 ** (attempt - 1)))


#: What a response that has been read keeps as its stream (see `_send`).
_READ = httpx.ByteStream(b"")


def _parse(response: httpx.Response) -> Envelope:
    try:
        envelope = Envelope.model_validate(response.json())
    except (ValueError, ValidationError):
        envelope = None
    if response.is_success and envelope is not None and envelope.success:
        return envelope
    first = envelope.errors[0] if envelope and envelope.errors else None
    if first and first.message:
        message = first.message
    elif envelope is None:
        # Not Cloudflare's JSON: a proxy's or load balancer's page. Its text is never shown.
        kind = response.headers.get("content-type", "").split(";")[0] or "no content type"
        message = f"{response.reason_phrase or 'unexpected response'} ({kind} instead of Cloudflare's JSON)"
    else:
        message = response.reason_phrase or "unexpected response"
    code = first.code if first else None
    status = response.status_code
    if status == 429:
        raise CloudflareRateLimited(message, retry_after=_retry_after(response), code=code)
    if status >= 500:
        raise CloudflareServerError(message, status=status, code=code)
    if status in (401, 403):
        raise CloudflareAuthError(message, status=status, code=code)
    if status == 404:
        raise CloudflareNotFound(message, status=status, code=code)
    if status >= 400:
        raise CloudflareClientError(message, status=status, code=code)
    if envelope is None:
        raise CloudflareUnreadable(message, status=status)  # a 2xx we cannot read may still have acted
    # 2xx with success: false: a refusal with Cloudflare's text.
    raise CloudflareClientError(message, status=status, code=code)


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None
