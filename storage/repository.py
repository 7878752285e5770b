"""Queries and conditional updates on requests, their Slack messages and the audit log.

Every state change is one `UPDATE ... WHERE id = :id AND status IN (:allowed sources)`: when two
clicks, two replicas or a click and a sweep race, exactly one update matches a row.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BindParameter,
    ClauseElement,
    ColumnElement,
    CursorResult,
    Table,
    Update,
    bindparam,
    delete,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from storage.models import AccessRequest, AuditEvent, HomeViewer, ProcessedEvent, RequestMessage
from storage.states import OPEN_STATUSES, RequestStatus, sources_for

_REQUESTS: Table = AccessRequest.__table__  # type: ignore[assignment]
_AUDIT: Table = AuditEvent.__table__  # type: ignore[assignment]


class DuplicateOpenRequest(Exception):
    def __init__(self) -> None:
        super().__init__("the requester already has an open request for this account")


@dataclass(frozen=True)
class NewRequest:
    requester_slack_id: str
    requester_email: str
    account_id: str
    account_name: str
    requested_role_ids: list[str]
    requested_role_names: list[str]
    reason: str
    requester_standing: str | None = None
    requested_duration_s: int | None = None
    extends_request_id: int | None = None
    access_model: str | None = None
    zone_ids: list[str] | None = None
    zone_names: list[str] | None = None


def open_request_for(session: Session, requester_slack_id: str, account_id: str) -> AccessRequest | None:
    return session.scalars(
        select(AccessRequest).where(
            AccessRequest.requester_slack_id == requester_slack_id,
            AccessRequest.account_id == account_id,
            AccessRequest.status.in_([status.value for status in OPEN_STATUSES]),
        )
    ).first()


def create_request(
    session: Session, new: NewRequest, *, now: datetime, reminder_due_at: datetime, expires_at: datetime
) -> AccessRequest:
    """Insert a pending request, as one table statement (the ORM's flush and the savepoint it needed
    cost five times the INSERT). The partial unique index refuses a second open one per account:
    DuplicateOpenRequest, after which the unit of work is spoilt (PostgreSQL aborts it); the caller
    reads the open one (`open_request_for`) in a new one."""
    values: dict[str, Any] = {
        "status": RequestStatus.PENDING.value,
        "requester_slack_id": new.requester_slack_id,
        "requester_email": new.requester_email,
        "account_id": new.account_id,
        "account_name": new.account_name,
        "requested_role_ids": new.requested_role_ids,
        "requested_role_names": new.requested_role_names,
        "reason": new.reason,
        "requester_standing": new.requester_standing,
        "requested_duration_s": new.requested_duration_s,
        "extends_request_id": new.extends_request_id,
        "access_model": new.access_model,
        "zone_ids": new.zone_ids,
        "zone_names": new.zone_names,
        "created_at": now,
        "updated_at": now,
        "approval_reminder_due_at": reminder_due_at,
        "expires_at": expires_at,
        "invite_attempts": 0,
        "approval_reminders_sent": 0,
        "invite_reminders_sent": 0,
        "removal_attempts": 0,
        "member_created_by_bot": False,
        "member_added_to": False,
    }
    try:
        inserted = session.connection().execute(_INSERT_REQUEST, values)
    except IntegrityError:
        raise DuplicateOpenRequest from None
    # Everything else starts empty; the caller gets the row as stored, not attached to the session.
    key = inserted.inserted_primary_key
    assert key is not None  # an INSERT of one row always has one
    return AccessRequest(id=key[0], **values)


_INSERT_REQUEST = insert(_REQUESTS)


#: Built once: `session.get` builds its statement on every call (a fifth of a read's cost here).
_REQUEST_BY_ID = (
    select(AccessRequest).where(AccessRequest.id == bindparam("request_id")).execution_options(populate_existing=True)
)


def get_request(session: Session, request_id: int) -> AccessRequest | None:
    """The request as stored now (what the session already holds is refreshed)."""
    return session.execute(_REQUEST_BY_ID, {"request_id": request_id}).scalar_one_or_none()


_STATUS_BY_ID = select(AccessRequest.status).where(AccessRequest.id == bindparam("request_id"))


def status_of(session: Session, request_id: int) -> str | None:
    """The request's stored status alone: a check that loads nothing else."""
    status: str | None = session.execute(_STATUS_BY_ID, {"request_id": request_id}).scalar_one_or_none()
    return status


_STAMP_BY_ID = select(AccessRequest.status, AccessRequest.updated_at).where(AccessRequest.id == bindparam("request_id"))


def state_stamp(session: Session, request_id: int) -> tuple[str, datetime] | None:
    """The request's status and when it last moved: what tells one drawn state from a later one
    (every transition sets both), read without loading the request."""
    row = session.execute(_STAMP_BY_ID, {"request_id": request_id}).one_or_none()
    return None if row is None else (row[0], row[1])


class _OneMore:
    """A value that adds one to the column's stored value in the same update (an attempt counted)."""

    def __repr__(self) -> str:
        return "ONE_MORE"


#: `claim(..., invite_attempts=ONE_MORE)`: count one more in the update itself, never read-modify-write.
ONE_MORE: Any = _OneMore()

#: The UPDATE statements of the hot paths, built once per shape (which columns, which guard) and run
#: with bound values: building one and computing its cache key cost more than running it on SQLite.
#: The shapes are the call sites', a few dozen at most.
_UPDATES: dict[Hashable, Update] = {}


def transition(
    session: Session,
    request_id: int,
    target: RequestStatus,
    *,
    now: datetime,
    only_from: Iterable[RequestStatus] | None = None,
    conditions: Iterable[Any] = (),
    **values: Any,
) -> bool:
    """Move a request to `target` if it is in an allowed source state (and `conditions` hold); False
    when another actor won."""
    sources = sources_for(target) if only_from is None else frozenset(only_from) & sources_for(target)
    values = {"status": target.value, "updated_at": now, **values}
    conditions = list(conditions)
    if conditions:
        return _update_one(session, request_id, [_status_in(sources), *conditions], values)
    guard = ("status in", frozenset(sources))
    return _update_guarded(session, request_id, guard, lambda: [_status_in(sources)], {}, values)


def _status_in(sources: Iterable[RequestStatus]) -> ColumnElement[bool]:
    return AccessRequest.status.in_(sorted(s.value for s in sources))


def claim(session: Session, request_id: int, *conditions: Any, **values: Any) -> bool:
    """Conditional update without a state change: claims a reminder, a lease or a flag exactly once."""
    if conditions:
        return _update_one(session, request_id, conditions, values)
    return _update_guarded(session, request_id, "any", list, {}, values)


def _set(column: str, value: Any) -> Any:
    return _REQUESTS.c[column] + 1 if value is ONE_MORE else value


def _update_one(session: Session, request_id: int, conditions: Iterable[Any], values: dict[str, Any]) -> bool:
    """One conditional UPDATE of a request, True when it matched. Sent on the session's connection
    as a table statement: the ORM's bulk-update path added a third to its cost and did nothing here
    (nothing loaded is synchronised; readers load the request again)."""
    result = session.connection().execute(
        update(_REQUESTS)
        .where(_REQUESTS.c.id == request_id, *conditions)
        .values({column: _set(column, value) for column, value in values.items()})
    )
    return bool(result.rowcount == 1)


def _update_guarded(
    session: Session,
    request_id: int,
    guard: Hashable,
    conditions: Callable[[], list[Any]],
    guard_values: dict[str, Any],
    values: dict[str, Any],
) -> bool:
    """`_update_one` through a statement kept per shape: `guard` names the `conditions`, which bind
    `guard_values` by name (`bindparam("g_<name>")`); the columns set make the rest of the shape.
    Values are bound at run time; a SQL expression other than ONE_MORE is written into a statement
    built for this call only."""
    inline = any(isinstance(value, ClauseElement) for value in values.values())
    shape = (guard, tuple(sorted((column, value is ONE_MORE) for column, value in values.items())))
    statement = None if inline else _UPDATES.get(shape)
    if statement is None:
        columns = _REQUESTS.c
        statement = (
            update(_REQUESTS)
            .where(columns.id == bindparam("g_id"), *conditions())
            .values(
                {
                    column: _set(column, value)
                    if value is ONE_MORE or isinstance(value, ClauseElement)
                    else bindparam(f"v_{column}", type_=columns[column].type)
                    for column, value in values.items()
                }
            )
        )
        if not inline:
            _UPDATES[shape] = statement
    parameters = {"g_id": request_id}
    parameters.update((f"g_{name}", value) for name, value in guard_values.items())
    parameters.update(
        (f"v_{column}", value)
        for column, value in values.items()
        if value is not ONE_MORE and not isinstance(value, ClauseElement)
    )
    return bool(session.connection().execute(statement, parameters).rowcount == 1)


def _bound(column: str, name: str | None = None) -> BindParameter[Any]:
    """A guard's value, bound at run time as `g_<name>` (default: the column's name)."""
    return bindparam(f"g_{name or column}", type_=_REQUESTS.c[column].type)


def requests_of(session: Session, requester_slack_id: str, *, limit: int = 20) -> Sequence[AccessRequest]:
    return session.scalars(
        select(AccessRequest)
        .where(AccessRequest.requester_slack_id == requester_slack_id)
        .order_by(AccessRequest.created_at.desc(), AccessRequest.id.desc())
        .limit(limit)
    ).all()


def pending_for_accounts(
    session: Session, account_ids: Iterable[str], *, limit: int = 50, not_from: str | None = None
) -> Sequence[AccessRequest]:
    """The oldest pending requests for `account_ids`, but none filed by `not_from` (who cannot decide them)."""
    ids = list(account_ids)
    if not ids:
        return []
    return session.scalars(
        select(AccessRequest)
        .where(*_pending_in(ids, not_from))
        .order_by(AccessRequest.created_at, AccessRequest.id)
        .limit(limit)
    ).all()


def count_pending_for_accounts(session: Session, account_ids: Iterable[str], *, not_from: str | None = None) -> int:
    ids = list(account_ids)
    if not ids:
        return 0
    return session.scalar(select(func.count()).select_from(AccessRequest).where(*_pending_in(ids, not_from))) or 0


def _pending_in(account_ids: list[str], not_from: str | None) -> list[ColumnElement[bool]]:
    conditions = [AccessRequest.status == RequestStatus.PENDING.value, AccessRequest.account_id.in_(account_ids)]
    if not_from is not None:
        conditions.append(AccessRequest.requester_slack_id != not_from)
    return conditions


def pending_account_ids(session: Session, account_ids: Iterable[str]) -> set[str]:
    """The accounts among `account_ids` that have pending requests (answered from the status index)."""
    ids = list(account_ids)
    if not ids:
        return set()
    return set(
        session.scalars(
            select(AccessRequest.account_id)
            .where(AccessRequest.status == RequestStatus.PENDING.value, AccessRequest.account_id.in_(ids))
            .distinct()
        )
    )


def iter_requests(
    session: Session, *, status: str | None = None, account_id: str | None = None, batch: int = 500
) -> Iterator[AccessRequest]:
    """Stream requests in id order, a batch at a time, so a large table never sits in memory."""
    last_id = 0
    while True:
        query = select(AccessRequest).where(AccessRequest.id > last_id)
        if status:
            query = query.where(AccessRequest.status == status)
        if account_id:
            query = query.where(AccessRequest.account_id == account_id)
        rows = session.scalars(query.order_by(AccessRequest.id).limit(batch)).all()
        if not rows:
            return
        yield from rows
        last_id = rows[-1].id
        session.expunge_all()


def invites_due(session: Session, now: datetime, *, limit: int) -> list[int]:
    """Approved requests whose invite is due and not leased by a live worker."""
    query = (
        select(AccessRequest.id)
        .where(
            AccessRequest.status == RequestStatus.APPROVED.value,
            AccessRequest.invite_due_at <= now,
            or_(AccessRequest.invite_lease_until.is_(None), AccessRequest.invite_lease_until < now),
        )
        .order_by(AccessRequest.invite_due_at)
        .limit(limit)
    )
    return list(session.scalars(query))


def lease_invite(session: Session, request_id: int, *, now: datetime, lease_until: datetime) -> bool:
    """Take an approved invite that is due and not leased by a live worker (one taker wins), and
    count the attempt the taker is about to make, in the same update."""

    def due_and_free() -> list[Any]:
        columns = _REQUESTS.c
        now = _bound("invite_due_at", "now")
        return [
            columns.status == RequestStatus.APPROVED.value,
            or_(columns.invite_due_at.is_(None), columns.invite_due_at <= now),
            or_(columns.invite_lease_until.is_(None), columns.invite_lease_until < now),
        ]

    values = {"invite_lease_until": lease_until, "invite_attempts": ONE_MORE}
    return _update_guarded(session, request_id, "invite due and free", due_and_free, {"now": now}, values)


def _lease_held() -> list[Any]:
    return [
        _REQUESTS.c.status == RequestStatus.APPROVED.value,
        _REQUESTS.c.invite_lease_until == _bound("invite_lease_until", "held"),
    ]


def renew_invite_lease(
    session: Session, request_id: int, *, held: datetime, lease_until: datetime, **values: Any
) -> bool:
    """Extend a lease only while it is still the one its holder wrote (`held`): a holder whose lease
    lapsed and was taken over never takes it back. False: the lease is lost."""
    values = {"invite_lease_until": lease_until, **values}
    return _update_guarded(session, request_id, "invite lease held", _lease_held, {"held": held}, values)


def release_invite(session: Session, request_id: int, *, held: datetime, **values: Any) -> bool:
    """Give a still-held lease back, with `values` (the next due time) written in the same update."""
    values = {"invite_lease_until": None, **values}
    return _update_guarded(session, request_id, "invite lease held", _lease_held, {"held": held}, values)


def add_message(
    session: Session, request_id: int, *, channel_id: str, ts: str, approver_slack_id: str | None, now: datetime
) -> None:
    session.add(
        RequestMessage(
            request_id=request_id,
            channel_id=channel_id,
            ts=ts,
            approver_slack_id=approver_slack_id,
            created_at=now,
        )
    )


def messages_for(session: Session, request_id: int) -> Sequence[RequestMessage]:
    return session.scalars(
        select(RequestMessage).where(RequestMessage.request_id == request_id).order_by(RequestMessage.id)
    ).all()


def append_audit(
    session: Session,
    *,
    time: datetime,
    event: str,
    request_id: int | None,
    actor_slack_id: str | None,
    actor_email: str | None,
    details: dict[str, Any],
) -> None:
    """One audit row, inserted at once on the session's connection (committed with the unit of
    work): the ORM's unit of work cost twice as much for a row nobody reads back."""
    session.connection().execute(
        insert(_AUDIT),
        {
            "time": time,
            "event": event,
            "request_id": request_id,
            "actor_slack_id": actor_slack_id,
            "actor_email": actor_email,
            "details": details,
        },
    )


def iter_audit(session: Session, *, since: datetime | None = None, batch: int = 1000) -> Iterator[AuditEvent]:
    last_id = 0
    while True:
        query = select(AuditEvent).where(AuditEvent.id > last_id)
        if since is not None:
            query = query.where(AuditEvent.time >= since)
        rows = session.scalars(query.order_by(AuditEvent.id).limit(batch)).all()
        if not rows:
            return
        yield from rows
        last_id = rows[-1].id
        session.expunge_all()


def audit_for(session: Session, request_id: int) -> Sequence[AuditEvent]:
    return session.scalars(select(AuditEvent).where(AuditEvent.request_id == request_id).order_by(AuditEvent.id)).all()


def remember_event(session: Session, event_id: str, *, now: datetime) -> bool:
    """Record an Events API delivery; False if it was seen before (a retry)."""
    try:
        with session.begin_nested():
            session.add(ProcessedEvent(event_id=event_id, received_at=now))
            session.flush()
    except IntegrityError:
        return False
    return True


def record_home_viewer(session: Session, user_id: str, *, now: datetime) -> None:
    """Note that `user_id` opened the Home tab (an update; an insert the first time)."""
    result = session.execute(update(HomeViewer).where(HomeViewer.slack_user_id == user_id).values(opened_at=now))
    if isinstance(result, CursorResult) and result.rowcount:
        return
    try:
        with session.begin_nested():
            session.add(HomeViewer(slack_user_id=user_id, opened_at=now))
            session.flush()
    except IntegrityError:  # a replica recorded the same first open at the same moment
        pass


def home_viewers_among(session: Session, user_ids: Iterable[str]) -> set[str]:
    """Those of `user_ids` who have ever opened the Home tab."""
    wanted = sorted(set(user_ids))
    if not wanted:
        return set()
    return set(session.scalars(select(HomeViewer.slack_user_id).where(HomeViewer.slack_user_id.in_(wanted))))


def claim_due(
    session: Session,
    status: RequestStatus | Iterable[RequestStatus],
    due_column: Any,
    now: datetime,
    *,
    limit: int,
    next_due: datetime | None,
    **values: Any,
) -> list[AccessRequest]:
    """Claim up to `limit` requests in `status` (one or several) whose `due_column` has passed, by
    moving it to `next_due` (None: cleared, for what happens once).

    On PostgreSQL the candidate rows are locked with FOR UPDATE SKIP LOCKED, so concurrent sweepers
    split the work; on every database each row is then claimed by a conditional update on its old
    due time, so a row is never handed to two sweepers.
    """
    statuses = [status.value] if isinstance(status, RequestStatus) else [s.value for s in status]
    candidates = session.execute(
        select(AccessRequest.id, due_column)
        .where(AccessRequest.status.in_(statuses), due_column.is_not(None), due_column <= now)
        .order_by(due_column)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()
    claimed_ids = []
    for request_id, old_due in candidates:
        if _update_one(
            session,
            request_id,
            [AccessRequest.status.in_(statuses), due_column == old_due],
            {due_column.key: next_due, **values},
        ):
            claimed_ids.append(request_id)
    if not claimed_ids:
        return []
    return list(
        session.scalars(
            select(AccessRequest).where(AccessRequest.id.in_(claimed_ids)).execution_options(populate_existing=True)
        )
    )


def prune_events(session: Session, *, before: datetime) -> int:
    """Forget Events API deliveries older than Slack's retry window (retries stop after ~5 minutes)."""
    result = session.execute(delete(ProcessedEvent).where(ProcessedEvent.received_at < before))
    return int(result.rowcount or 0) if isinstance(result, CursorResult) else 0


def grants_of(session: Session, requester_slack_id: str) -> Sequence[AccessRequest]:
    """A person's requests that hold or may still become access (offboarding goes through these)."""
    holding = [
        RequestStatus.PENDING.value,
        RequestStatus.APPROVED.value,
        RequestStatus.INVITED.value,
        RequestStatus.ACCEPTED.value,
    ]
    return session.scalars(
        select(AccessRequest)
        .where(AccessRequest.requester_slack_id == requester_slack_id, AccessRequest.status.in_(holding))
        .order_by(AccessRequest.id)
    ).all()


def other_grants_on(session: Session, request: AccessRequest) -> int:
    """Other requests whose access still lives on the same Cloudflare membership as `request`'s."""
    if request.cloudflare_member_id is None:
        return 0
    return int(
        session.scalar(
            select(func.count())
            .select_from(AccessRequest)
            .where(
                AccessRequest.account_id == request.account_id,
                AccessRequest.cloudflare_member_id == request.cloudflare_member_id,
                AccessRequest.id != request.id,
                AccessRequest.status.in_([RequestStatus.INVITED.value, RequestStatus.ACCEPTED.value]),
            )
        )
        or 0
    )
