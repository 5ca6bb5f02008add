"""The engine on SQLite without a server: the pragmas every connection gets, a second writer that
waits for the lock instead of failing, and no schema built outside the migrations. (The schema on
SQLite and PostgreSQL, the upgrade lock and the start-up refusal are in tests/integration/test_db.py.)"""

from __future__ import annotations

import ast
import threading
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa

from checkpoint.storage import db
from tests.support.race import result_or_error

ROOT = Path(__file__).resolve().parents[3]


def test_sqlite_pragmas_on_every_connection(tmp_path, engine_for):
    engine = engine_for(f"sqlite:///{tmp_path / 'deep' / 'er' / 'checkpoint.db'}")
    assert (tmp_path / "deep" / "er").is_dir()  # the parent directory is created
    # Two connections held at once: the pool opened both, and each got the pragmas.
    with engine.connect() as first, engine.connect() as second:
        for conn in (first, second):
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar_one() == 1
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar_one() >= 5000
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar_one() == "wal"


def test_sqlite_writer_waits_instead_of_failing(tmp_path, engine_for):
    """With a busy timeout, a second writer waits for the first's lock rather than 'database is locked'."""
    url = f"sqlite:///{tmp_path / 'checkpoint.db'}"
    db.upgrade(engine_for(url))
    holder, waiter = engine_for(url), engine_for(url)
    insert = sa.text(
        "INSERT INTO events (model_name, kind, actor, data, created_at, prev_hash, hash) "
        "VALUES ('m', :kind, 'a', '{}', :now, 'p', 'h')"
    )
    second_insert_started = threading.Event()

    @sa.event.listens_for(waiter, "connect")
    def _trace(dbapi_conn, _record):
        dbapi_conn.set_trace_callback(lambda sql: "'second'" in sql and second_insert_started.set())

    outcome: list[object] = []

    def second_writer() -> None:
        with waiter.begin() as conn:
            conn.execute(insert, {"kind": "second", "now": datetime.now(UTC)})

    with holder.connect() as conn:
        conn.exec_driver_sql("BEGIN IMMEDIATE")  # take the write lock
        conn.execute(insert, {"kind": "first", "now": datetime.now(UTC)})
        thread = threading.Thread(target=lambda: outcome.append(result_or_error(second_writer)), daemon=True)
        thread.start()
        assert second_insert_started.wait(timeout=30), "the second writer never reached its INSERT"
        assert outcome == []  # still waiting for our lock, not failed
        conn.exec_driver_sql("COMMIT")
    thread.join(timeout=30)
    assert outcome == [None]
    with holder.connect() as conn:
        assert sorted(conn.execute(sa.text("SELECT kind FROM events")).scalars()) == ["first", "second"]


def test_no_module_builds_tables_with_create_all():
    """Schema only through migrations: no `metadata.create_all` / `drop_all` anywhere in the code or tests."""
    offenders = []
    for folder in ("checkpoint", "tests", "benchmarks", "scripts"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            tree = ast.parse(path.read_text(), filename=str(path))
            for node in ast.walk(tree):
                name = node.attr if isinstance(node, ast.Attribute) else node.id if isinstance(node, ast.Name) else None
                if name in ("create_all", "drop_all"):
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert offenders == []
    assert (ROOT / "checkpoint" / "storage" / "db.py").exists()  # the walk looked at the real tree
