"""The event chain as stored, on a migrated SQLite file: rows rewritten in SQL the way an insider
would (with the key, or with a retired one) break it where the auditor must look, and the events
recorded before the chain existed are chained by the migration. (The same on PostgreSQL, the CLI
and the API are in tests/integration/test_audit.py and test_gate_audit.py.)"""

from __future__ import annotations

import json

import sqlalchemy as sa

from checkpoint.events import audit
from checkpoint.storage import db
from tests.support.audit import KEY, KEYS, execute, seed, store_for

OLD_KEY = "retired-audit-key-" + "a1" * 20
OLD_KEYS = audit.Keyring.of(OLD_KEY)
ROTATED = audit.Keyring.of(KEY, OLD_KEY)  # after rotation: KEY signs, OLD_KEY still verifies


def rows_of(url: str) -> list[dict]:
    return list(store_for(url).audit_rows())


def test_a_forged_row_with_recomputed_hash_breaks_the_next_link(sqlite_url, tmp_path):
    """Even someone holding the key, who rewrites a row *and* its hash, breaks the following
    row's prev_hash (tests/integration/test_gate_audit.py: without the key, the row itself fails)."""
    store = store_for(sqlite_url)
    seed(store)
    rows = list(store.audit_rows())
    forged = {**rows[6], "actor": "mallory"}
    new_hash = audit.event_hash(forged, forged["prev_hash"], KEYS.keys[0])
    execute(sqlite_url, "UPDATE events SET actor = 'mallory', hash = :h WHERE id = :id", h=new_hash, id=rows[6]["id"])
    verdict = audit.verify(store.audit_rows(), keys=KEYS)
    assert not verdict.ok and verdict.broken_at == rows[7]["id"] and "deleted, inserted or reordered" in verdict.problem


def test_migration_chains_events_recorded_before_it(tmp_path):
    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = db.make_engine(url)
    db.upgrade(engine, "0003")
    with engine.begin() as conn:
        for i in range(5):
            conn.execute(
                sa.text(
                    "INSERT INTO events (model_name, kind, actor, data, created_at) "
                    "VALUES ('m', 'opened', 'alice', :data, '2026-11-01 10:00:00.000000')"
                ),
                {"data": json.dumps({"i": i})},
            )
    db.upgrade(engine)
    store = store_for(url)
    verdict = audit.verify(store.audit_rows())  # without a key: the plain SHA-256 chain of before
    assert verdict.ok and verdict.count == 5 and verdict.unkeyed == 5
    assert "no audit key" in verdict.describe()
    assert store.record_outside_change("m", "alias:champion", "1")  # new events link onto the migrated chain
    verdict = audit.verify(store.audit_rows(), keys=KEYS)
    assert verdict.ok and verdict.count == 6 and verdict.unkeyed == 5, verdict.describe()
    execute(url, "UPDATE events SET data = '{\"i\": 9}' WHERE id = 3")
    assert audit.verify(store.audit_rows(), keys=KEYS).broken_at == 3


def test_a_row_appended_with_a_retired_key_is_broken(sqlite_url, tmp_path):
    """A leaked retired key cannot extend the log: once a newer key signed an event, an event made
    with the older one after it is a break."""
    seed(store_for(sqlite_url, OLD_KEYS), requests_=1)
    seed(store_for(sqlite_url, ROTATED), requests_=1)
    assert audit.verify(rows_of(sqlite_url), keys=ROTATED).ok
    forged_store = store_for(sqlite_url, OLD_KEYS)
    forged_store.add_comment(1, "mallory", "approved offline")
    last = rows_of(sqlite_url)[-1]
    verdict = audit.verify(rows_of(sqlite_url), keys=ROTATED)
    assert not verdict.ok and verdict.broken_at == last["id"]
    assert "retired key was used after rotation" in verdict.problem
