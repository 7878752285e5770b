"""httpx client for the Cloudflare v4 endpoints the bot uses.

Reads (GET) are retried here on 5xx/timeouts because they are idempotent; the member POST is never
retried by the client: the invite outbox decides, after checking for an existing member.

With a `CloudflarePause` (the bot always has one, shared by the whole process) a 429 pauses every
call and is never slept on: calls during the pause fail fast with `CloudflarePaused`. Without one
(a client on its own) a read waits for `Retry-After` and tries again, as before.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

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
from bot.cloudflare.models import Account, Envelope, Member, MemberUser, Role, TokenStatus
from bot.cloudflare.pacing import CloudflarePause

log = logging.getLogger(__name__)
ModelT = TypeVar("ModelT", bound=BaseModel)
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
    ) -> None:
        self._http = httpx.Client(
            base_url=base_url.rstrip("/"),
            headers={**credentials.headers(), "User-Agent": "cf-access-bot"},
            timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)),
            transport=transport,
        )
        self._credentials = credentials
        self._read_attempts = read_attempts
        self._sleep = sleep
        self._pause = pause

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

    def create_member(self, account_id: str, *, email: str, role_ids: list[str]) -> Member:
        """Invite `email` with the given roles. Not retried here: a retry could invite twice.

        Only the member id is read from the answer (Cloudflare's answer may omit `roles`); without
        an id the call is ambiguous and the caller re-reads the member list before anything else.
        """
        envelope = self._send("POST", f"/accounts/{account_id}/members", json={"email": email, "roles": role_ids})
        result = envelope.result if isinstance(envelope.result, dict) else {}
        member_id = result.get("id")
        if not isinstance(member_id, str) or not member_id:
            raise CloudflareUnreadable(f"Cloudflare accepted the invite for {account_id} but sent no member id")
        return Member(
            id=member_id,
            status=str(result.get("status") or "pending"),
            email=email,
            user=MemberUser(email=email),
            roles=[Role(id=role_id, name="") for role_id in role_ids],
        )

    def delete_member(self, account_id: str, member_id: str) -> None:
        self._send("DELETE", f"/accounts/{account_id}/members/{member_id}")

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
        if self._pause is not None:
            self._pause.check()
        try:
            response = self._http.request(method, path, params=params, json=json)
        except httpx.TimeoutException:
            raise CloudflareUnavailable(f"Cloudflare did not answer {method} {path} in time") from None
        except httpx.TransportError as error:
            raise CloudflareUnavailable(
                f"connection to Cloudflare failed on {method} {path}: {type(error).__name__}"
            ) from None
        try:
            return _parse(response)
        except CloudflareRateLimited as error:
            if self._pause is not None:
                resumes = self._pause.pause(error.retry_after)
                log.warning("Cloudflare answered 429 on %s %s; every call paused until %s", method, path, resumes)
            raise


def _retry_delay(error: CloudflareError, attempt: int) -> float:
    if isinstance(error, CloudflareRateLimited) and error.retry_after is not None:
        return min(error.retry_after, _MAX_RETRY_AFTER)
    return backoff_delay(attempt)


def backoff_delay(attempt: int, *, base: float = 0.5, cap: float = 30.0) -> float:
    """Exponential backoff with full jitter."""
    return random.uniform(0, min(cap, base * 2 ** (attempt - 1)))


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
