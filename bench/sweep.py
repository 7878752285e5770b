"""Sweep cost over a large table: 100 000 stored requests with 0, 100 and 1 000 due.

Run: .venv/bin/python -m bench.sweep [--database-url URL] [--stored 100000]
Uses the fake Slack and Cloudflare from tests/ over loopback.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, insert, select, text, update

from bot.core.clock import FrozenClock
from bot.ops.scheduler import Sweeper
from bot.ops.wiring import build_services
from storage.db import Database
from storage.migrate import upgrade
from storage.models import AccessRequest, AuditEvent, RequestMessage
from tests.fakes.cloudflare import SUPER_ADMIN, FakeCloudflare
from tests.fakes.slack import FakeSlack, Message
from tests.harness import CF_TOKEN, bot_settings

ROOT_TS = "1600000000.000001"


def populate(db: Database, clock: FrozenClock, account_id: str, stored: int) -> None:
    now = clock.now()
    statuses = ("pending", "invited", "denied", "accepted", "expired")
    batch: list[dict[str, Any]] = []
    for n in range(stored):
        status = statuses[n % len(statuses)]
        batch.append(
            dict(
                status=status,
                requester_slack_id=f"UBENCH{n}",
                requester_email=f"bench{n}@example.com",
                account_id=account_id,
                account_name="Acme Production",
                requested_role_ids=["r"],
                requested_role_names=["DNS"],
                reason="bench",
                created_at=now,
                updated_at=now,
                approval_reminder_due_at=now + timedelta(hours=4) if status == "pending" else None,
                expires_at=now + timedelta(days=7) if status == "pending" else None,
                invite_check_due_at=now + timedelta(hours=1) if status == "invited" else None,
            )
        )
        if len(batch) == 5000:
            with db.session() as session:
                session.execute(insert(AccessRequest), batch)
            batch = []
    if batch:
        with db.session() as session:
            session.execute(insert(AccessRequest), batch)
    with db.session() as session:
        ids = session.scalars(select(AccessRequest.id).where(AccessRequest.status == "pending")).all()
        session.execute(
            insert(RequestMessage),
            [
                dict(
                    request_id=i,
                    channel_id="C0APPROVE1",
                    ts=ROOT_TS,
                    approver_slack_id=None,
                    created_at=now,
                )
                for i in ids
            ],
        )


def make_due(db: Database, clock: FrozenClock, count: int) -> None:
    with db.session() as session:
        ids = session.scalars(
            select(AccessRequest.id).where(AccessRequest.status == "pending").order_by(AccessRequest.id).limit(count)
        ).all()
        session.execute(
            update(AccessRequest)
            .where(AccessRequest.id.in_(ids))
            .values(approval_reminder_due_at=clock.now() - timedelta(seconds=1))
        )


def timed_sweeps(sweeper: Sweeper) -> tuple[float, float, int]:
    """(first sweep ms, ms until nothing is due, sweeps)"""
    started = time.perf_counter()
    report = sweeper.run_once()
    first = (time.perf_counter() - started) * 1000
    sweeps = 1
    while report.approver_reminders:
        report = sweeper.run_once()
        sweeps += 1
    return first, (time.perf_counter() - started) * 1000, sweeps


def run_sweep_bench(stored: int, database_url: str | None = None) -> list[tuple[int, float, float, int]]:
    """[(due, first sweep ms, ms until all due handled, sweeps)] over `stored` requests."""
    slack = FakeSlack().start()
    cloudflare = FakeCloudflare(token=CF_TOKEN).start()
    account_id = cloudflare.add_account("Acme Production")
    cloudflare.add_member(account_id, "bob@example.com", [SUPER_ADMIN["id"]])
    slack.add_user("U0BOB00001", "bob@example.com", "bob")
    # Every stored pending request points at this one root, so thread replies and updates succeed.
    root = Message("C0APPROVE1", ROOT_TS, "root", [])
    slack.messages.append(root)
    slack._by_key[(root.channel, root.ts)] = root
    url = database_url or f"sqlite:///{tempfile.mkdtemp()}/bench.db"
    db = Database.from_url(url)
    if db.is_postgres:
        with db.engine.begin() as connection:
            connection.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    upgrade(db.engine)
    clock = FrozenClock()
    settings = bot_settings(slack, cloudflare, url, approval_channel="C0APPROVE1")
    services = build_services(settings, clock=clock, db=db, sleep=lambda _s: None)
    started = time.perf_counter()
    populate(db, clock, account_id, stored)
    print(f"  stored {stored} requests in {time.perf_counter() - started:.1f}s ({db.engine.dialect.name})", flush=True)
    sweeper = Sweeper(services)
    sweeper.run_once()  # warm caches and connections
    results = []
    for due in (0, 100, 1000):
        make_due(db, clock, due)
        first, total, sweeps = timed_sweeps(sweeper)
        results.append((due, first, total, sweeps))
        with db.session() as session:
            session.execute(delete(AuditEvent))
    services.close()
    slack.stop()
    cloudflare.stop()
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--database-url")
    parser.add_argument("--stored", type=int, default=100_000)
    args = parser.parse_args()
    for due, first, total, sweeps in run_sweep_bench(args.stored, args.database_url):
        print(f"due={due:>5}: first sweep {first:8.1f} ms; all due handled in {total:8.1f} ms over {sweeps} sweep(s)")


if __name__ == "__main__":
    main()
