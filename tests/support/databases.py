"""One fresh database: a migrated SQLite file, or a new PostgreSQL database dropped afterwards.
The schema is always built by the migrations, never by ``create_all``."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import sqlalchemy as sa

from checkpoint.storage import db
from tests.support.waiting import poll

__all__ = ["drop_database", "migrated_database", "migrated_sqlite"]


def migrated_sqlite(directory: Path) -> str:
    """A migrated SQLite database file in ``directory``; returns its URL."""
    directory.mkdir(parents=True, exist_ok=True)
    url = f"sqlite:///{directory / 'checkpoint.db'}"
    engine = db.make_engine(url)
    db.upgrade(engine)
    engine.dispose()
    return url


def migrated_database(kind: str, request, directory: Path, prefix: str = "cp_test") -> Iterator[str]:
    """A fresh, migrated database: an SQLite file in ``directory``, or a new PostgreSQL database
    (dropped afterwards). A generator, for fixtures of any scope to ``yield from``."""
    if kind == "sqlite":
        yield migrated_sqlite(directory)
        return
    admin = request.getfixturevalue("postgres_admin")
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = admin.url.set(database=name).render_as_string(hide_password=False)
    engine = db.make_engine(url)
    db.upgrade(engine)
    engine.dispose()
    yield url
    drop_database(admin, name)


def drop_database(admin: sa.Engine, name: str, wait: float = 10.0) -> None:
    """Drop a test database, ending our own connections to it. A server process we may not end
    (autovacuum starting on the new database) is waited out first, for at most ``wait`` seconds."""
    others = sa.text("SELECT count(*) FROM pg_stat_activity WHERE datname = :name AND usename IS DISTINCT FROM current_user")
    with admin.connect() as conn:
        poll(lambda: not conn.execute(others, {"name": name}).scalar(), timeout=wait)
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
