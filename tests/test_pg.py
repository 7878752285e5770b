"""The PostgreSQL fixture uses scratch databases and never touches data it did not create."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url

from storage.db import make_engine
from storage.migrate import upgrade
from tests.pg import SCRATCH_PREFIX, maintenance_engine, scratch_database, server_url

pytestmark = pytest.mark.skipif(server_url() is None, reason="TEST_DATABASE_URL is not set")


@pytest.fixture
def server() -> str:
    url = server_url()
    assert url is not None
    return url


@pytest.fixture
def admin(server: str) -> Iterator[Engine]:
    engine = maintenance_engine(server)
    yield engine
    engine.dispose()


def database_exists(admin: Engine, name: str) -> bool:
    with admin.connect() as connection:
        return connection.execute(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}).first() is not None


def test_scratch_database_leaves_the_named_database_untouched(server: str, admin: Engine) -> None:
    # A unique name, so that runs sharing the server at the same time cannot collide.
    keep_me = f"keep_me_{secrets.token_hex(4)}"
    with admin.connect() as connection:
        connection.execute(text(f"CREATE TABLE {keep_me} (id int PRIMARY KEY, note text)"))
        connection.execute(text(f"INSERT INTO {keep_me} VALUES (1, 'precious')"))
    try:
        with scratch_database(server) as url:
            name = url.rsplit("/", 1)[-1]
            assert name.startswith(SCRATCH_PREFIX)
            assert database_exists(admin, name)
            # What a test does: migrate and write, through an engine left open on purpose.
            engine = make_engine(url)
            upgrade(engine)
            with engine.begin() as connection:
                tables = connection.execute(text("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"))
                assert tables.scalar_one() > 0
        engine.dispose()
        assert not database_exists(admin, name), "the scratch database is dropped"
        with admin.connect() as connection:
            rows = connection.execute(text(f"SELECT id, note FROM {keep_me}")).all()
        assert [tuple(row) for row in rows] == [(1, "precious")]
    finally:
        with admin.connect() as connection:
            connection.execute(text(f"DROP TABLE IF EXISTS {keep_me}"))


def test_scratch_database_is_dropped_when_the_test_fails(server: str, admin: Engine) -> None:
    with pytest.raises(RuntimeError), scratch_database(server) as url:
        name = url.rsplit("/", 1)[-1]
        raise RuntimeError("the test failed")
    assert not database_exists(admin, name)


def test_database_url_fixture_gives_each_test_its_own_database(database_url: str, server: str) -> None:
    """Holds for the SQLite parameter too; on PostgreSQL the URL names a scratch database."""
    if database_url.startswith("postgresql"):
        assert make_url(database_url).database != make_url(server).database
        assert str(make_url(database_url).database).startswith(SCRATCH_PREFIX)
