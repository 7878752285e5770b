"""The state machine and the conditional updates that make races have one winner."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest

from storage.db import Database
from storage.migrate import upgrade
from storage.repository import (
    ONE_MORE,
    DuplicateOpenRequest,
    NewRequest,
    claim,
    create_request,
    get_request,
    lease_invite,
    open_request_for,
    release_invite,
    renew_invite_lease,
    transition,
)
from storage.states import ALLOWED_TRANSITIONS, IllegalTransition, RequestStatus, check_transition, sources_for

NOW = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


@pytest.fixture
def db(database_url: str) -> Database:
    database = Database.from_url(database_url)
    upgrade(database.engine)
    return database


def new_request(requester: str = "U1", account: str = "acc") -> NewRequest:
    return NewRequest(requester, "a@example.com", account, "Acme", ["r1"], ["DNS"], "because")


def test_transition_table() -> None:
    assert ALLOWED_TRANSITIONS[RequestStatus.PENDING] >= {
        RequestStatus.APPROVED,
        RequestStatus.DENIED,
        RequestStatus.CANCELLED,
        RequestStatus.EXPIRED,
    }
    assert RequestStatus.INVITED in ALLOWED_TRANSITIONS[RequestStatus.APPROVED]
    assert RequestStatus.ACCEPTED in ALLOWED_TRANSITIONS[RequestStatus.INVITED]
    for terminal in (
        RequestStatus.DENIED,
        RequestStatus.CANCELLED,
        RequestStatus.EXPIRED,
        RequestStatus.ENDED,
        RequestStatus.REVOKED,
    ):
        assert ALLOWED_TRANSITIONS[terminal] == frozenset()
    # A grant, pending or accepted, ends or is revoked; nothing else leaves it.
    assert ALLOWED_TRANSITIONS[RequestStatus.ACCEPTED] == {RequestStatus.ENDED, RequestStatus.REVOKED}
    assert sources_for(RequestStatus.DENIED) == {RequestStatus.PENDING}
    with pytest.raises(IllegalTransition):
        check_transition(RequestStatus.DENIED, RequestStatus.APPROVED)


def test_times_come_back_timezone_aware(db: Database) -> None:
    with db.session() as session:
        request = create_request(session, new_request(), now=NOW, reminder_due_at=NOW, expires_at=NOW)
    with db.session() as session:
        loaded = get_request(session, request.id)
    assert loaded is not None and loaded.created_at == NOW and loaded.created_at.tzinfo is not None


def test_conditional_update_has_one_winner(db: Database) -> None:
    with db.session() as session:
        request_id = create_request(session, new_request(), now=NOW, reminder_due_at=NOW, expires_at=NOW).id
    winners: list[str] = []
    barrier = threading.Barrier(8)

    def decide(who: str) -> None:
        barrier.wait()
        with db.session() as session:
            if transition(session, request_id, RequestStatus.APPROVED, now=NOW, decided_by_slack_id=who):
                winners.append(who)

    threads = [threading.Thread(target=decide, args=(f"U{n}",)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(winners) == 1
    with db.session() as session:
        loaded = get_request(session, request_id)
        assert loaded is not None and loaded.decided_by_slack_id == winners[0]
        # A later deny loses: denied is only reachable from pending.
        assert not transition(session, request_id, RequestStatus.DENIED, now=NOW)


def test_kept_update_statements_bind_each_calls_own_values_and_guards(db: Database) -> None:
    """The hot paths' UPDATEs are built once per shape and reused: every call must still be
    guarded by its own sources, lease and time, and write its own values."""
    with db.session() as session:
        first = create_request(session, new_request("U1"), now=NOW, reminder_due_at=NOW, expires_at=NOW).id
        second = create_request(session, new_request("U2"), now=NOW, reminder_due_at=NOW, expires_at=NOW).id
    held = NOW + timedelta(minutes=1)
    with db.session() as session:
        for request_id, who in ((first, "U8"), (second, "U9")):
            assert transition(
                session,
                request_id,
                RequestStatus.APPROVED,
                now=NOW,
                only_from={RequestStatus.PENDING},
                decided_by_slack_id=who,
                invite_lease_until=held,
                invite_attempts=0,
            )
        # Same columns, other sources: a kept statement for {pending} must not serve {approved}.
        assert not transition(session, first, RequestStatus.APPROVED, now=NOW, only_from={RequestStatus.PENDING})
        assert not transition(session, first, RequestStatus.DENIED, now=NOW)
        # The lease: only its holder's value renews it, and each renewal counts one more attempt.
        later = held + timedelta(minutes=1)
        assert renew_invite_lease(session, first, held=held, lease_until=later, invite_attempts=ONE_MORE)
        assert not renew_invite_lease(session, first, held=held, lease_until=later, invite_attempts=ONE_MORE)
        assert renew_invite_lease(session, first, held=later, lease_until=later, invite_attempts=ONE_MORE)
        assert not release_invite(session, second, held=later, invite_due_at=NOW)
        assert release_invite(session, second, held=held, invite_due_at=NOW + timedelta(hours=1))
        # Due in an hour: not taken now, taken then; a live lease is never taken.
        assert not lease_invite(session, second, now=NOW, lease_until=held)
        in_an_hour = NOW + timedelta(hours=1)
        assert lease_invite(session, second, now=in_an_hour, lease_until=in_an_hour + timedelta(minutes=1))
        assert not lease_invite(session, second, now=in_an_hour, lease_until=in_an_hour + timedelta(minutes=2))
        assert claim(session, second, resend_offered_at=NOW)
        assert claim(session, first, resend_offered_at=NOW + timedelta(days=1))
    # FAILED is reached from pending and from approved: same target, same columns, other sources.
    with db.session() as session:
        third = create_request(session, new_request("U3"), now=NOW, reminder_due_at=NOW, expires_at=NOW).id
        fourth = create_request(session, new_request("U4"), now=NOW, reminder_due_at=NOW, expires_at=NOW).id
        assert transition(
            session, third, RequestStatus.FAILED, now=NOW, only_from={RequestStatus.PENDING}, closed_at=NOW
        )
        assert not transition(
            session, fourth, RequestStatus.FAILED, now=NOW, only_from={RequestStatus.APPROVED}, closed_at=NOW
        ), "a statement kept for {pending} served {approved}"
        # Counting one more, then writing a count: the same columns, not the same statement.
        assert renew_invite_lease(session, first, held=later, lease_until=later, invite_attempts=7)
    with db.session() as session:
        one, two = get_request(session, first), get_request(session, second)
    assert one is not None and two is not None
    assert (one.decided_by_slack_id, one.invite_attempts, one.invite_lease_until) == ("U8", 7, later)
    assert (two.decided_by_slack_id, two.invite_attempts) == ("U9", 1)
    assert two.invite_lease_until == NOW + timedelta(hours=1, minutes=1)
    assert (one.resend_offered_at, two.resend_offered_at) == (NOW + timedelta(days=1), NOW)
    assert two.invite_due_at == NOW + timedelta(hours=1)


def test_one_open_request_per_account_is_enforced_by_the_database(db: Database) -> None:
    with db.session() as session:
        first = create_request(session, new_request(), now=NOW, reminder_due_at=NOW, expires_at=NOW)
    with pytest.raises(DuplicateOpenRequest), db.session() as session:
        create_request(session, new_request(), now=NOW, reminder_due_at=NOW, expires_at=NOW)
    with db.session() as session:
        existing = open_request_for(session, "U1", "acc")
    assert existing is not None and existing.id == first.id
    with db.session() as session:
        create_request(session, new_request(account="other"), now=NOW, reminder_due_at=NOW, expires_at=NOW)
        assert transition(session, first.id, RequestStatus.DENIED, now=NOW + timedelta(minutes=1))
    with db.session() as session:
        again = create_request(session, new_request(), now=NOW, reminder_due_at=NOW, expires_at=NOW)
    assert again.id > first.id


def test_migrations_are_idempotent(db: Database) -> None:
    upgrade(db.engine)
    upgrade(db.engine)


def test_migrations_build_exactly_the_models_schema(db: Database) -> None:
    """A column added to a model without a migration (or the reverse) fails here, not in production."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from storage.models import Base

    upgrade(db.engine)
    with db.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": False})
        differences = compare_metadata(context, Base.metadata)
    assert differences == []


def test_head_revision_constant_is_alembics_head() -> None:
    """`HEAD_REVISION` lets a current database start without Alembic; it must name the real head."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from storage.migrate import _MIGRATIONS, HEAD_REVISION

    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    assert ScriptDirectory.from_config(config).get_heads() == [HEAD_REVISION]
