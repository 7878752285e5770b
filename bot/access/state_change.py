"""A state change and its audit row, committed together, or neither when another actor won."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from bot.access.audit import AuditEventType, AuditLog
from bot.core.clock import Clock
from storage.db import Database
from storage.repository import transition
from storage.states import RequestStatus


def change_state(
    db: Database,
    audit: AuditLog,
    clock: Clock,
    request_id: int,
    target: RequestStatus,
    event: AuditEventType,
    *,
    only_from: Iterable[RequestStatus],
    actor_slack_id: str | None = None,
    actor_email: str | None = None,
    details: dict[str, Any] | None = None,
    conditions: Iterable[Any] = (),
    **values: Any,
) -> bool:
    """Conditionally move the request to `target` and audit it in the same transaction."""
    with db.session() as session:
        if not transition(
            session, request_id, target, now=clock.now(), only_from=only_from, conditions=conditions, **values
        ):
            return False
        audit.record(
            session,
            event,
            request_id=request_id,
            actor_slack_id=actor_slack_id,
            actor_email=actor_email,
            **(details or {}),
        )
    return True
