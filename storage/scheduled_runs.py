"""Jobs that run once across replicas and restarts (`scheduled_runs`), claimed by conditional updates.

A run is claimed by moving `claimed_until` forward, only when the last run is at least `every` ago and
nobody holds a live claim: of two replicas (or a replica and its restarted self) exactly one update
matches. The value written is the holder's token: every later step is conditional on it still being
there, so a holder whose claim lapsed and was taken over changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import CursorResult, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from storage.models import ScheduledRun


@dataclass(frozen=True)
class RunClaim:
    name: str
    #: The holder's token (the `claimed_until` it wrote).
    held: datetime
    #: When the job last ran before this claim; None the first time.
    previous_run_at: datetime | None


def _ensure_row(session: Session, name: str) -> None:
    if session.get(ScheduledRun, name) is not None:
        return
    try:
        with session.begin_nested():
            session.add(ScheduledRun(name=name))
            session.flush()
    except IntegrityError:
        pass  # another process created it first


def _matched(result: Any) -> bool:
    assert isinstance(result, CursorResult)
    return bool(result.rowcount == 1)


def claim_run(session: Session, name: str, *, now: datetime, every: timedelta, lease: timedelta) -> RunClaim | None:
    """Claim job `name` if it last ran at least `every` before `now` and no live claim holds it."""
    _ensure_row(session, name)
    held = now + lease
    result = session.execute(
        update(ScheduledRun)
        .where(
            ScheduledRun.name == name,
            or_(ScheduledRun.last_run_at.is_(None), ScheduledRun.last_run_at <= now - every),
            or_(ScheduledRun.claimed_until.is_(None), ScheduledRun.claimed_until < now),
        )
        .values(claimed_until=held)
        .execution_options(synchronize_session=False)
    )
    if not _matched(result):
        return None
    previous = session.scalar(select(ScheduledRun.last_run_at).where(ScheduledRun.name == name))
    return RunClaim(name, held, previous)


def renew_run(session: Session, claim: RunClaim, *, until: datetime) -> RunClaim | None:
    """Extend a claim still held; None when it lapsed and another process took it."""
    result = session.execute(
        update(ScheduledRun)
        .where(ScheduledRun.name == claim.name, ScheduledRun.claimed_until == claim.held)
        .values(claimed_until=until)
        .execution_options(synchronize_session=False)
    )
    return RunClaim(claim.name, until, claim.previous_run_at) if _matched(result) else None


def finish_run(session: Session, claim: RunClaim, *, ran_at: datetime) -> bool:
    """Record the run at `ran_at` and drop the claim, if still held: the next is due `every` later."""
    result = session.execute(
        update(ScheduledRun)
        .where(ScheduledRun.name == claim.name, ScheduledRun.claimed_until == claim.held)
        .values(last_run_at=ran_at, claimed_until=None)
        .execution_options(synchronize_session=False)
    )
    return _matched(result)


def release_run(session: Session, claim: RunClaim) -> bool:
    """Give a claim back without recording a run, so the next sweep tries again."""
    result = session.execute(
        update(ScheduledRun)
        .where(ScheduledRun.name == claim.name, ScheduledRun.claimed_until == claim.held)
        .values(claimed_until=None)
        .execution_options(synchronize_session=False)
    )
    return _matched(result)


def undo_run(session: Session, claim: RunClaim, *, ran_at: datetime) -> bool:
    """A run recorded at `ran_at` did not happen after all (its message was refused): due again at once."""
    result = session.execute(
        update(ScheduledRun)
        .where(ScheduledRun.name == claim.name, ScheduledRun.last_run_at == ran_at)
        .values(last_run_at=claim.previous_run_at)
        .execution_options(synchronize_session=False)
    )
    return _matched(result)


def get_run(session: Session, name: str) -> ScheduledRun | None:
    return session.get(ScheduledRun, name, populate_existing=True)


def save_result(session: Session, name: str, result: dict[str, Any]) -> None:
    """Store what job `name` found (no claim needed: the last writer's result is the newest)."""
    _ensure_row(session, name)
    session.execute(
        update(ScheduledRun)
        .where(ScheduledRun.name == name)
        .values(result=result)
        .execution_options(synchronize_session=False)
    )
