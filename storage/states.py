"""The request state machine: every allowed transition in one table."""

from __future__ import annotations

from enum import StrEnum


class RequestStatus(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"  # decided; invite not yet confirmed by Cloudflare
    INVITED = "invited"
    ACCEPTED = "accepted"
    DENIED = "denied"
    CANCELLED = "cancelled"
    EXPIRED = "expired"
    FAILED = "failed"
    ENDED = "ended"  # a time-bound grant reached its end and the bot removed what it added
    REVOKED = "revoked"  # removed early: by an approver, an operator, or offboarding


ALLOWED_TRANSITIONS: dict[RequestStatus, frozenset[RequestStatus]] = {
    # FAILED from pending: the request could not be delivered to any approver.
    RequestStatus.PENDING: frozenset(
        {
            RequestStatus.APPROVED,
            RequestStatus.DENIED,
            RequestStatus.CANCELLED,
            RequestStatus.EXPIRED,
            RequestStatus.FAILED,
        }
    ),
    RequestStatus.APPROVED: frozenset({RequestStatus.INVITED, RequestStatus.ACCEPTED, RequestStatus.FAILED}),
    # "Retry invite" puts a failed request back into the outbox.
    RequestStatus.FAILED: frozenset({RequestStatus.APPROVED}),
    # An invite revoked in Cloudflare closes the request; "Resend invite" stays in `invited`.
    # An invite that disappears from Cloudflare fails (with Retry invite); a grant ends or is revoked.
    RequestStatus.INVITED: frozenset(
        {
            RequestStatus.ACCEPTED,
            RequestStatus.CANCELLED,
            RequestStatus.FAILED,
            RequestStatus.ENDED,
            RequestStatus.REVOKED,
        }
    ),
    RequestStatus.ACCEPTED: frozenset({RequestStatus.ENDED, RequestStatus.REVOKED}),
    RequestStatus.ENDED: frozenset(),
    RequestStatus.REVOKED: frozenset(),
    RequestStatus.DENIED: frozenset(),
    RequestStatus.CANCELLED: frozenset(),
    RequestStatus.EXPIRED: frozenset(),
}

# A requester may hold one of these per account at a time.
OPEN_STATUSES: frozenset[RequestStatus] = frozenset(
    {RequestStatus.PENDING, RequestStatus.APPROVED, RequestStatus.INVITED}
)
TERMINAL_STATUSES: frozenset[RequestStatus] = frozenset(
    status for status, targets in ALLOWED_TRANSITIONS.items() if not targets
)


class IllegalTransition(Exception):
    def __init__(self, source: RequestStatus, target: RequestStatus) -> None:
        super().__init__(f"a request cannot go from {source} to {target}")
        self.source = source
        self.target = target


def sources_for(target: RequestStatus) -> frozenset[RequestStatus]:
    """States from which `target` may be reached: the WHERE clause of a conditional update."""
    return frozenset(source for source, targets in ALLOWED_TRANSITIONS.items() if target in targets)


def check_transition(source: RequestStatus, target: RequestStatus) -> None:
    if target not in ALLOWED_TRANSITIONS[source]:
        raise IllegalTransition(source, target)
