"""Typed Cloudflare failures carrying Cloudflare's own code and message."""

from __future__ import annotations


class CloudflareError(Exception):
    """Cloudflare answered with an error, or could not be reached."""

    #: True when the request may have taken effect although no success came back.
    ambiguous = False
    #: True when sending the same request again later may succeed.
    retryable = False

    def __init__(self, message: str, *, status: int | None = None, code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code

    def __str__(self) -> str:
        where = f"HTTP {self.status}" if self.status else "no response"
        code = f", code {self.code}" if self.code else ""
        return f"{self.message} ({where}{code})"


class CloudflareClientError(CloudflareError):
    """A 4xx other than 401/403/404/429: the request itself was refused."""


class CloudflareAuthError(CloudflareClientError):
    """401/403: bad credentials or a token without the permission."""


class CloudflareNotFound(CloudflareClientError):
    """404: the member, role or account does not exist (any more)."""


class CloudflareRateLimited(CloudflareError):
    retryable = True

    def __init__(self, message: str, *, retry_after: float | None, code: int | None = None) -> None:
        super().__init__(message, status=429, code=code)
        self.retry_after = retry_after


class CloudflareServerError(CloudflareError):
    """5xx: Cloudflare may or may not have acted."""

    ambiguous = True
    retryable = True


class CloudflareUnavailable(CloudflareError):
    """Timeout or dropped connection: the request may have reached Cloudflare."""

    ambiguous = True
    retryable = True


class CloudflareUnreadable(CloudflareError):
    """A success whose body could not be read (no member id, not JSON): the call may have acted."""

    ambiguous = True
    retryable = True
