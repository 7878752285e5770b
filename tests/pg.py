"""PostgreSQL for tests: TEST_DATABASE_URL names a server to use, never a database to wipe.

Each test gets a scratch database of its own, created through the database named in the URL (the
maintenance database, e.g. `test`) and dropped at the end; nothing else on the server is touched,
so the URL may point at a server that holds other data, and several runs may share it at once.
Per test rather than per session because CREATE + DROP DATABASE costs about 60 ms here, in the
range of the migrations each test runs anyway.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

ENV = "TEST_DATABASE_URL"
SCRATCH_PREFIX = "cfab_test_"


def server_url() -> str | None:
    """The PostgreSQL server tests may use, or None to run on SQLite only."""
    return os.environ.get(ENV) or None


def psycopg_url(url: str) -> str:
    """SQLAlchemy picks psycopg2 for a bare `postgresql://`; the tests install psycopg 3."""
    if url.startswith("postgresql://"):
        return "postgresql+psycopg://" + url.removeprefix("postgresql://")
    return url


def maintenance_engine(server: str) -> Engine:
    """Autocommit (CREATE/DROP DATABASE refuse to run in a transaction), no pool left behind."""
    return create_engine(psycopg_url(server), isolation_level="AUTOCOMMIT", poolclass=NullPool)


@contextmanager
def scratch_database(server: str) -> Iterator[str]:
    """Create a uniquely named database on `server`, yield its URL, and drop exactly that one.

    The drop uses WITH (FORCE) (PostgreSQL 13+) so that a bot process or an engine a test left
    open cannot keep the database alive; callers should still dispose their engines first.
    """
    name = f"{SCRATCH_PREFIX}{os.getpid()}_{secrets.token_hex(4)}"
    admin = maintenance_engine(server)
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            yield make_url(psycopg_url(server)).set(database=name).render_as_string(hide_password=False)
        finally:
            with admin.connect() as connection:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()
