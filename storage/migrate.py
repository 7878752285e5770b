"""Schema migrations (Alembic), safe when several replicas start at the same moment."""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError

if TYPE_CHECKING:
    from alembic.config import Config

_MIGRATIONS = Path(__file__).parent / "migrations"
# Any constant works; it only has to be the same for every replica.
_ADVISORY_LOCK_KEY = 0x6366_6163_6365_7373
#: The newest revision in migrations/versions (a test checks it against Alembic's own head). A
#: database already there needs no Alembic at all: the process starts without loading it (~10 MiB).
HEAD_REVISION = "0006"


def is_current(engine: Engine) -> bool:
    try:
        with engine.connect() as connection:
            return connection.execute(text("SELECT version_num FROM alembic_version")).scalar() == HEAD_REVISION
    except DBAPIError:  # no alembic_version table yet
        return False


def _alembic_config() -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    return config


@contextlib.contextmanager
def _sqlite_file_lock(engine: Engine) -> Iterator[None]:
    """Processes sharing one SQLite file take turns migrating it (PostgreSQL uses an advisory lock)."""
    database = engine.url.database
    if engine.dialect.name != "sqlite" or not database or database == ":memory:":
        yield
        return
    # Connect first: a path that cannot be opened then fails as the database error it is
    # (reported as one DATABASE_URL line), not as a missing lock file.
    engine.connect().close()
    with open(f"{database}.migrate-lock", "a") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)


def upgrade(engine: Engine) -> None:
    """Bring the schema to the newest revision; safe when several replicas start at once."""
    if is_current(engine):
        return
    from alembic import command

    config = _alembic_config()
    with _sqlite_file_lock(engine), engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _ADVISORY_LOCK_KEY})
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


def revision(engine: Engine, message: str) -> None:
    """Developer helper: autogenerate a migration from the models."""
    from alembic import command

    config = _alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.revision(config, message=message, autogenerate=True)
