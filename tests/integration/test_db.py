"""The schema, built only by alembic, on SQLite and PostgreSQL alike."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from checkpoint import create_app
from checkpoint.storage import db
from tests.support.apps import close_app
from tests.support.databases import drop_database
from tests.support.race import race, result_or_error
from tests.support.waiting import poll

ROOT = Path(__file__).resolve().parents[2]
TABLES = {
    "promote_requests",
    "reviews",
    "comments",
    "events",
    "check_results",
    "deliveries",
    "statuses",
    "diff_snapshots",
    "behaviour_results",
    "request_changes",
    "api_tokens",
    "people",
}
# SQLite's FTS5 title index (migration 0017) and its shadow tables.
TITLE_INDEX = {"request_titles", *(f"request_titles_{part}" for part in ("config", "data", "docsize", "idx"))}
# pg_advisory_lock(bigint) shows in pg_locks as classid = high 32 bits, objid = low 32 bits.
LOCK_KEY = db._MIGRATION_LOCK_KEY


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_database_url(request, tmp_path) -> Iterator[str]:
    """A database nothing has touched yet: a new SQLite path, or a new PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'fresh' / 'checkpoint.db'}"
        return
    admin = request.getfixturevalue("postgres_admin")
    name = f"cp_fresh_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    yield admin.url.set(database=name).render_as_string(hide_password=False)
    drop_database(admin, name)


def table_names(engine: sa.Engine) -> set[str]:
    return set(sa.inspect(engine).get_table_names())


def schema_tables(engine: sa.Engine) -> set[str]:
    """The tables the migrations build on ``engine``'s dialect."""
    return TABLES | {db.VERSION_TABLE} | (TITLE_INDEX if engine.dialect.name == "sqlite" else set())


def schema_snapshot(engine: sa.Engine) -> dict[str, object]:
    """Columns, indexes and foreign keys of every table, as comparable plain values."""
    inspector = sa.inspect(engine)
    return {
        name: (
            [(c["name"], str(c["type"]), c["nullable"], c["default"]) for c in inspector.get_columns(name)],
            sorted((i["name"], tuple(i["column_names"]), bool(i["unique"])) for i in inspector.get_indexes(name)),
            sorted((f["referred_table"], tuple(f["constrained_columns"])) for f in inspector.get_foreign_keys(name)),
        )
        for name in sorted(inspector.get_table_names())
    }


def test_migrations_build_the_schema(empty_database_url, engine_for):
    engine = engine_for(empty_database_url)
    assert table_names(engine) == set()
    assert db.current_revision(engine) is None

    revision = db.upgrade(engine)

    head = db.head_revision(engine)
    assert head is not None
    assert revision == head
    assert db.current_revision(engine) == head
    assert table_names(engine) == schema_tables(engine)
    assert db.VERSION_TABLE == "checkpoint_alembic_version"
    with engine.connect() as conn:
        versions = conn.execute(sa.text(f"SELECT version_num FROM {db.VERSION_TABLE}")).scalars().all()
    assert versions == [head]
    db.check_current(engine)  # does not raise


def test_migrated_schema_matches_the_models(database_url, engine_for):
    """The ORM models and the migrations describe the same columns (no drift between the two)."""
    from checkpoint.storage.models import Base

    inspector = sa.inspect(engine_for(database_url))
    for table in Base.metadata.sorted_tables:
        migrated = {c["name"] for c in inspector.get_columns(table.name)}
        assert migrated == set(table.columns.keys()), table.name


def test_upgrade_twice_is_a_no_op(database_url, engine_for):
    engine = engine_for(database_url)
    head = db.head_revision(engine)
    now = datetime.now(UTC)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO events (model_name, kind, actor, data, created_at, prev_hash, hash) "
                "VALUES ('m', 'kept', 'alice', '{}', :now, 'p', 'h')"
            ),
            {"now": now},
        )
    before = schema_snapshot(engine)
    assert set(before) == schema_tables(engine)

    assert db.upgrade(engine) == head
    assert db.upgrade(engine) == head

    engine.dispose()  # a fresh inspector: nothing cached from before
    assert schema_snapshot(engine) == before
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT kind FROM events")).scalars().all() == ["kept"]
        assert conn.execute(sa.text(f"SELECT count(*) FROM {db.VERSION_TABLE}")).scalar_one() == 1


def test_create_app_refuses_an_unmigrated_database(empty_database_url, tmp_path):
    config = {"registry_url": "http://127.0.0.1:9", "database_url": empty_database_url, "data_dir": tmp_path}
    with pytest.raises(db.SchemaError, match=r"is at schema nothing \(empty\).*run `checkpoint db upgrade` first"):
        create_app(config)
    password = sa.engine.make_url(empty_database_url).password
    if password:  # PostgreSQL: the message names the database but never its password
        with pytest.raises(db.SchemaError) as raised:
            create_app(config)
        assert f":{password}@" not in str(raised.value)
        assert ":***@" in str(raised.value)


def test_create_app_accepts_a_migrated_database(database_url, tmp_path):
    app = create_app({"registry_url": "http://127.0.0.1:9", "database_url": database_url, "data_dir": tmp_path})
    try:
        assert app.test_client().get("/checkpoint/healthz").status_code == 200
    finally:
        close_app(app)


def test_foreign_keys_are_enforced(database_url, engine_for):
    """A review for a request that does not exist is refused, on SQLite too (PRAGMA foreign_keys)."""
    engine = engine_for(database_url)
    with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
        conn.execute(
            sa.text("INSERT INTO reviews (request_id, reviewer, verdict, created_at) VALUES (424242, 'bob', 'approve', :now)"),
            {"now": datetime.now(UTC)},
        )


@pytest.mark.postgres
def test_concurrent_upgrades_on_postgresql_both_succeed(postgres_admin, engine_for):
    """Replicas starting at once: every upgrade succeeds and the migrations run exactly once."""
    name = f"cp_race_{uuid.uuid4().hex[:12]}"
    with postgres_admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        url = postgres_admin.url.set(database=name).render_as_string(hide_password=False)
        engines = [engine_for(url) for _ in range(4)]
        # Daemon threads: without the lock they deadlock, and the race must still report.
        results = race(*[lambda e=e: db.upgrade(e) for e in engines], timeout=60, capture=True, daemon=True)
        head = db.head_revision(engines[0])
        assert results == [head] * len(engines)
        assert table_names(engines[0]) == TABLES | {db.VERSION_TABLE}
        with engines[0].connect() as conn:
            assert conn.execute(sa.text(f"SELECT version_num FROM {db.VERSION_TABLE}")).scalars().all() == [head]
    finally:
        drop_database(postgres_admin, name)


@pytest.mark.postgres
def test_upgrade_waits_for_the_advisory_lock(postgres_admin, engine_for):
    """While another session holds the migration lock, an upgrade waits on it and changes nothing."""
    name = f"cp_lock_{uuid.uuid4().hex[:12]}"
    with postgres_admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        url = postgres_admin.url.set(database=name).render_as_string(hide_password=False)
        holder, upgrader, observer = engine_for(url), engine_for(url), engine_for(url)
        outcome: list[object] = []
        with holder.connect() as held:
            held.execute(sa.text("SELECT pg_advisory_lock(:k)"), {"k": LOCK_KEY})
            held.commit()
            thread = threading.Thread(target=lambda: outcome.append(result_or_error(db.upgrade, upgrader)), daemon=True)
            thread.start()
            assert poll(lambda: _advisory_waiters(observer) == 1 or bool(outcome), timeout=30)
            assert outcome == [], "the upgrade finished while another session held the migration lock"
            assert table_names(observer) == set()  # nothing migrated while the lock is held
            held.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": LOCK_KEY})
            held.commit()
        thread.join(timeout=60)
        head = db.head_revision(upgrader)
        assert outcome == [head]
        assert _advisory_waiters(observer) == 0
        with observer.connect() as conn:  # and the upgrader let go of the lock afterwards
            assert conn.execute(sa.text("SELECT pg_try_advisory_lock(:k)"), {"k": LOCK_KEY}).scalar_one() is True
            conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": LOCK_KEY})
    finally:
        drop_database(postgres_admin, name)


def _advisory_waiters(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return conn.execute(
            sa.text(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
                "AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
                "AND classid = :hi AND objid = :lo"
            ),
            {"hi": LOCK_KEY >> 32, "lo": LOCK_KEY & 0xFFFFFFFF},
        ).scalar_one()


def test_migration_0011_adds_and_drops_the_diff_snapshots(empty_database_url, engine_for):
    """Upgrade from the revision before 0011 keeps every request and adds an empty
    ``diff_snapshots``; downgrade drops it (a cache: nothing else is lost) and upgrading again
    rebuilds it."""
    from alembic import command
    from alembic.script import ScriptDirectory

    engine = engine_for(empty_database_url)
    config = db.alembic_config(engine)
    before = ScriptDirectory.from_config(config).get_revision("0011").down_revision
    assert isinstance(before, str)
    db.upgrade(engine, before)
    now = datetime.now(UTC)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO promote_requests (kind, model_name, target, change, title, description, author, state, "
                "state_reason, challenger, dedupe_key, created_at, updated_at, apply_result, named_reviewers, rule_name, "
                "workspace) VALUES ('set_alias', 'm', 'alias:champion', '{}', 't', '', 'alice', 'open', '', '{}', 'k', "
                ":now, :now, '', '[]', 'default', '')"
            ),
            {"now": now},
        )
    assert "diff_snapshots" not in table_names(engine)

    assert db.upgrade(engine) == db.head_revision(engine)
    assert "diff_snapshots" in table_names(engine)
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO diff_snapshots (request_id, raw_bytes, error) VALUES (1, 0, '')"))

    command.downgrade(config, before)
    engine.dispose()
    assert db.current_revision(engine) == before
    assert "diff_snapshots" not in table_names(engine)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT title FROM promote_requests")).scalars().all() == ["t"]

    db.upgrade(engine)
    engine.dispose()
    assert "diff_snapshots" in table_names(engine)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM diff_snapshots")).scalar_one() == 0


def test_migration_0014_adds_and_drops_the_behaviour_results(empty_database_url, engine_for):
    """``behaviour_results`` is a cache of behavioural diffs: downgrading drops it and nothing
    else; upgrading again rebuilds it empty."""
    from alembic import command

    engine = engine_for(empty_database_url)
    config = db.alembic_config(engine)
    db.upgrade(engine, "0011")
    assert "behaviour_results" not in table_names(engine)
    db.upgrade(engine)
    assert "behaviour_results" in table_names(engine)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO behaviour_results (key, workspace, challenger, state, reason) VALUES ('k', '', '{}', 'pending', '')"
            )
        )
    command.downgrade(config, "0011")
    engine.dispose()
    assert db.current_revision(engine) == "0011" and "behaviour_results" not in table_names(engine)
    db.upgrade(engine)
    engine.dispose()
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM behaviour_results")).scalar_one() == 0


def test_migration_0015_adds_and_drops_the_dataset_columns(empty_database_url, engine_for):
    """``behaviour_results`` gains ``evaluation`` and ``dataset_digest`` (indexed); downgrading to
    0014 drops them and keeps the rows."""
    from alembic import command

    engine = engine_for(empty_database_url)
    config = db.alembic_config(engine)
    db.upgrade(engine, "0014")
    assert "dataset_digest" not in {c["name"] for c in sa.inspect(engine).get_columns("behaviour_results")}
    db.upgrade(engine, "0015")
    engine.dispose()
    inspector = sa.inspect(engine)
    assert {"evaluation", "dataset_digest"} <= {c["name"] for c in inspector.get_columns("behaviour_results")}
    assert "ix_behaviour_results_dataset" in {i["name"] for i in inspector.get_indexes("behaviour_results")}
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO behaviour_results (key, workspace, challenger, state, reason, dataset_digest) "
                "VALUES ('k', '', '{}', 'done', '', 'd')"
            )
        )
    command.downgrade(config, "0014")
    engine.dispose()
    assert db.current_revision(engine) == "0014"
    assert "dataset_digest" not in {c["name"] for c in sa.inspect(engine).get_columns("behaviour_results")}
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM behaviour_results")).scalar_one() == 1


def test_migration_0016_indexes_every_change_of_the_requests_stored_before(empty_database_url, engine_for):
    """``request_changes`` is built for the requests already there: one row for a single-change
    request, one per change of a batch (with the version each promotes); downgrading drops it."""
    import json

    from alembic import command

    engine = engine_for(empty_database_url)
    config = db.alembic_config(engine)
    db.upgrade(engine, "0015")
    now = datetime.now(UTC)
    batch = [
        {
            "change": {"kind": "set_alias", "name": "a", "alias": "champion", "version": "3"},
            "target": "alias:champion",
            "challenger": {"name": "a", "version": "3"},
        },
        {
            "change": {"kind": "set_alias", "name": "b", "alias": "prod", "version": "5", "workspace": "team"},
            "target": "alias:prod",
            "challenger": {"name": "b", "version": "5"},
        },
    ]
    insert = sa.text(
        "INSERT INTO promote_requests (kind, model_name, target, change, title, description, author, state, "
        "state_reason, challenger, dedupe_key, created_at, updated_at, apply_result, named_reviewers, rule_name, "
        "workspace, changes) VALUES (:kind, :model, :target, '{}', 't', '', 'alice', 'open', '', :challenger, :key, "
        ":now, :now, '', '[]', 'default', '', :changes)"
    )
    with engine.begin() as conn:
        conn.execute(
            insert,
            {
                "kind": "set_alias",
                "model": "m",
                "target": "alias:champion",
                "key": "k1",
                "now": now,
                "challenger": json.dumps({"name": "m", "version": "2"}),
                "changes": None,
            },
        )
        conn.execute(
            insert,
            {
                "kind": "batch",
                "model": "a",
                "target": "alias:champion",
                "key": "k2",
                "now": now,
                "challenger": json.dumps(batch[0]["challenger"]),
                "changes": json.dumps(batch),
            },
        )
    db.upgrade(engine)
    query = sa.text(
        "SELECT request_id, position, workspace, model_name, target, challenger_model, challenger_version "
        "FROM request_changes ORDER BY request_id, position"
    )
    with engine.connect() as conn:
        rows = [tuple(r) for r in conn.execute(query)]
    assert rows == [
        (1, 0, "", "m", "alias:champion", "m", "2"),
        (2, 0, "", "a", "alias:champion", "a", "3"),
        (2, 1, "team", "b", "alias:prod", "b", "5"),
    ]
    command.downgrade(config, "0015")
    engine.dispose()
    assert db.current_revision(engine) == "0015"
    assert "request_changes" not in table_names(engine)


def test_migration_0017_indexes_the_titles_stored_before_and_the_model_filter(empty_database_url, engine_for):
    """Both dialects gain ``request_changes (model_name, request_id)``; SQLite's FTS5 title index
    holds the requests already there; downgrading drops both."""
    from alembic import command

    engine = engine_for(empty_database_url)
    db.upgrade(engine, "0016")
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO promote_requests (kind, model_name, target, change, title, description, author, state, "
                "state_reason, challenger, dedupe_key, created_at, updated_at, apply_result, named_reviewers, "
                "rule_name, workspace) VALUES ('set_alias', 'm', 'alias:champion', '{}', 'Promote Build 77', '', "
                "'alice', 'open', '', '{}', 'k1', :now, :now, '', '[]', 'default', '')"
            ),
            {"now": datetime.now(UTC)},
        )
    db.upgrade(engine)

    def model_indexes() -> set[str]:
        return {i["name"] for i in sa.inspect(engine).get_indexes("request_changes")} & {"ix_request_changes_model_name"}

    sqlite = engine.dialect.name == "sqlite"
    assert model_indexes() == {"ix_request_changes_model_name"}
    if sqlite:
        with engine.connect() as conn:
            match = sa.text("SELECT rowid FROM request_titles WHERE request_titles MATCH '\"build 7\"'")
            assert conn.execute(match).scalars().all() == [1]
    assert (TITLE_INDEX <= table_names(engine)) is sqlite
    command.downgrade(db.alembic_config(engine), "0016")
    engine.dispose()
    assert model_indexes() == set()
    assert not TITLE_INDEX & table_names(engine)
