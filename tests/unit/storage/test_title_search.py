"""The list's title search on SQLite: the FTS5 trigram index (migration 0017) finds the same
requests, in the same order, as reading every title does, and follows inserts, edits and deletes
(its triggers). The PostgreSQL search is exercised by tests/integration/test_api.py."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from checkpoint.storage.entities import EventKind
from checkpoint.storage.title_search import MIN_INDEXED, has_title_index, phrase
from tests.support.stored import make_store, memory_engine, open_one

TITLES = [
    "Promote fraud build 4242",
    "promote FRAUD build 42420",
    "100% sure: fraud_v2",
    "1000 sure fraudXv2",
    'say "hi" to prod',
    "Ünïcode Modèle ✓",
    "ab",
    "back\\slash path",
]
TERMS = ["build 4242", "BUILD 42", "fraud", "100%", "fraud_v2", "_v2", '"hi"', "Modèle", "ünï", "ab", "b", "\\slash", "zzzz", "%"]


@pytest.fixture
def engine() -> Iterator[sa.Engine]:
    with memory_engine() as engine:
        yield engine


@pytest.fixture
def store(engine):
    store = make_store(engine)
    for i, title in enumerate(TITLES):
        item, _ = open_one(store, key=f"k{i}")
        store.update_fields(item.id, actor="alice", event=EventKind.EDITED, data={}, title=title)
    return store


def scanned(engine: sa.Engine, term: str) -> list[int]:
    """What reading every title finds: Python's own substring test (ASCII case folded, as SQLite's
    LIKE does), newest first."""
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT id, title FROM promote_requests ORDER BY id DESC")).all()
    fold = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
    return [i for i, title in rows if term.translate(fold) in title.translate(fold)]


def found(store, term: str, **kwargs) -> list[int]:
    return [r.id for r in store.list_requests(search=term, limit=50, **kwargs)[0]]


def test_the_index_is_built_and_used_for_terms_of_three_characters_or_more(engine, store):
    with store.sessions() as session:
        assert has_title_index(session)
    assert MIN_INDEXED == 3
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM request_titles")).scalar_one() == len(TITLES)


@pytest.mark.parametrize("term", TERMS)
def test_the_index_finds_what_reading_every_title_finds(engine, store, term):
    assert found(store, term) == scanned(engine, term)


def test_a_search_finds_the_matches_newest_first_a_page_at_a_time(engine, store):
    everything = found(store, "fraud")
    assert len(everything) == 4 and everything == sorted(everything, reverse=True)
    first, cursor = store.list_requests(search="fraud", limit=2)
    assert [r.id for r in first] == everything[:2] and cursor == everything[1]
    second, last = store.list_requests(search="fraud", limit=2, before=cursor)
    assert [r.id for r in second] == everything[2:] and last is None


def test_a_search_combines_with_the_other_filters(store):
    newest = found(store, "fraud")[0]
    store.transition(newest, ("open",), "withdrawn", actor="alice", event=EventKind.WITHDRAWN)
    assert found(store, "fraud", state="withdrawn") == [newest]
    assert found(store, "fraud", state="open") == found(store, "fraud")[1:]
    assert found(store, "fraud", model="fraud") == found(store, "fraud")
    assert found(store, "fraud", model="other") == []


def test_the_index_follows_edits_and_deletes(engine, store):
    edited = found(store, "build 4242")[0]
    store.update_fields(edited, actor="alice", event=EventKind.EDITED, data={}, title="renamed entirely")
    assert edited not in found(store, "build 4242")
    assert found(store, "renamed") == [edited]
    with engine.begin() as conn:  # its events name it (no cascade: the audit trail); the rest cascades
        conn.execute(sa.text("DELETE FROM events WHERE request_id = :id"), {"id": edited})
        conn.execute(sa.text("DELETE FROM promote_requests WHERE id = :id"), {"id": edited})
        assert conn.execute(sa.text("SELECT count(*) FROM request_titles WHERE request_titles MATCH 'renamed'")).scalar() == 0
    assert found(store, "renamed") == []


def test_without_the_index_search_reads_every_title_with_the_same_answers(engine, store):
    """A SQLite without FTS5 (0017 skips the index): the scan alone, same results."""
    expected = {term: found(store, term) for term in TERMS}
    with engine.begin() as conn:
        for trigger in ("request_titles_insert", "request_titles_delete", "request_titles_update"):
            conn.execute(sa.text(f"DROP TRIGGER {trigger}"))
        conn.execute(sa.text("DROP TABLE request_titles"))
    with store.sessions() as session:
        assert not has_title_index(session)
    assert {term: found(store, term) for term in TERMS} == expected


def test_a_term_is_one_literal_fts_string():
    assert phrase('say "hi" OR x*') == '"say ""hi"" OR x*"'
