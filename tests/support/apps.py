"""One way to serve an app in a test: in a thread on a free loopback port, on a fresh database."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from werkzeug.serving import make_server

from checkpoint.edge.serving import RequestHandler
from checkpoint.storage import db
from tests.support.proxy import close_app

__all__ = ["ROOT", "LiveCheckpoint", "close_app", "drop_database", "migrated_database", "serve_in_thread"]

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class LiveCheckpoint:
    """Checkpoint answering real HTTP on a free loopback port."""

    url: str
    app: object
    database_url: str


def serve_in_thread(application, port: int) -> tuple[object, threading.Thread]:
    """A threaded werkzeug server for ``application``; callers shut it down."""
    server = make_server("127.0.0.1", port, application, threaded=True, request_handler=RequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return server, thread


def migrated_database(kind: str, request, directory: Path, prefix: str = "cp_test") -> Iterator[str]:
    """A fresh, migrated database: an SQLite file in ``directory``, or a new PostgreSQL database
    (dropped afterwards). A generator, for fixtures of any scope to ``yield from``."""
    if kind == "sqlite":
        url = f"sqlite:///{directory / 'checkpoint.db'}"
        engine = db.make_engine(url)
        db.upgrade(engine)
        engine.dispose()
        yield url
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
    deadline = time.monotonic() + wait
    others = sa.text("SELECT count(*) FROM pg_stat_activity WHERE datname = :name AND usename IS DISTINCT FROM current_user")
    with admin.connect() as conn:
        while conn.execute(others, {"name": name}).scalar() and time.monotonic() < deadline:
            time.sleep(0.05)
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


