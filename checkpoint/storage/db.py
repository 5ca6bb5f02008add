"""The SQL engine, its per-connection settings, and schema migrations through alembic.

The schema is only ever built by alembic (never ``create_all``), from the migrations
shipped inside the package, so a test database and a production one are the same shape.
"""

from __future__ import annotations

import importlib.resources
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url

VERSION_TABLE = "checkpoint_alembic_version"
# A fixed key for PostgreSQL's advisory lock, so replicas starting at once migrate one at a time.
_MIGRATION_LOCK_KEY = 0x43484B50  # "CHKP"


class SchemaError(RuntimeError):
    """The database is not at the schema this code expects."""


def migrations_dir() -> Path:
    """Where the migrations live, in a checkout and in an installed package alike."""
    return Path(str(importlib.resources.files("checkpoint.storage.migrations")))


def make_engine(database_url: str, **kwargs) -> Engine:
    """An engine with SQLite made safe for several threads and processes."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        if url.database and url.database != ":memory:":
            Path(url.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False}, **kwargs)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):  # a DBAPI hook
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.close()

        return engine
    return create_engine(url, pool_pre_ping=True, **kwargs)


def alembic_config(engine: Engine) -> Config:
    """Alembic configured in code: no alembic.ini to ship or to lose."""
    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    config.set_main_option("version_table", VERSION_TABLE)
    config.attributes["engine"] = engine
    return config


def head_revision(engine: Engine) -> str | None:
    return ScriptDirectory.from_config(alembic_config(engine)).get_current_head()


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE}).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> str | None:
    """Bring the schema to ``revision``; on PostgreSQL under an advisory lock."""
    config = alembic_config(engine)
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _MIGRATION_LOCK_KEY})
            try:
                conn.commit()
                command.upgrade(config, revision)
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _MIGRATION_LOCK_KEY})
                conn.commit()
    else:
        command.upgrade(config, revision)
    return current_revision(engine)


def check_current(engine: Engine) -> None:
    """Fail fast, naming the fix, when the schema is behind (gunicorn started without `db upgrade`)."""
    current, head = current_revision(engine), head_revision(engine)
    if current != head:
        raise SchemaError(
            f"the database at {engine.url.render_as_string(hide_password=True)} is at schema "
            f"{current or 'nothing (empty)'} but this Checkpoint needs {head}: run `checkpoint db upgrade` first"
        )


@contextmanager
def session_scope(factory):
    """Commit on success, roll back on error, always close."""
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
