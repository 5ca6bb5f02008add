"""The store on an in-memory SQLite database built by the migrations: one open request per
(author, change), conditional transitions, the keyed event chain, and the outbox written in the
event's own transaction. (The PostgreSQL twins and the races are in tests/integration.)"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from checkpoint.events import audit
from checkpoint.storage import db
from tests.support.stored import KEYS, make_store, memory_engine, open_one


@pytest.fixture
def engine() -> Iterator[sa.Engine]:
    """One in-memory database (a single shared connection), migrated to head."""
    with memory_engine() as engine:
        yield engine


def test_the_schema_is_the_migrations_head(engine):
    assert db.current_revision(engine) == db.head_revision(engine)
    db.check_current(engine)  # raises when behind


def test_one_open_request_per_author_and_change(engine):
    store = make_store(engine)
    first, created = open_one(store)
    again, created_again = open_one(store)
    other, created_other = open_one(store, author="bob", key="k2")  # the key is the author's and the change's
    assert created and not created_again and created_other
    assert again.id == first.id != other.id
    assert (first.state, first.author, first.title, first.version) == ("open", "alice", "promote v2", "2")


def test_a_transition_happens_only_from_the_states_named(engine):
    store = make_store(engine)
    item, _ = open_one(store)
    assert store.transition(item.id, ("open",), "approved", actor="carol", event="approved")
    assert not store.transition(item.id, ("open",), "rejected", actor="dave", event="rejected")
    assert store.get(item.id).state == "approved"
    assert store.transition(item.id, ("approved",), "applying", actor="carol", event="applying", reason="go")
    assert store.get(item.id).state_reason == "go"


def test_reviews_and_comments_are_recorded_with_events(engine):
    store = make_store(engine)
    item, _ = open_one(store)
    store.add_review(item.id, "carol", "approve", "ok", states=("open",))
    comment = store.add_comment(item.id, "bob", "looks fine")
    assert comment.body == "looks fine" and comment.author == "bob"
    assert [r.reviewer for r in store.get(item.id).approvals] == ["carol"]
    kinds = sorted(e.kind for e in store.events("fraud"))
    assert kinds == ["commented", "opened", "review_approved"]


def test_every_event_is_chained_under_the_key_and_verifies(engine):
    store = make_store(engine)
    for n in range(3):
        item, _ = open_one(store, key=f"k{n}")
        store.add_comment(item.id, "bob", f"comment {n}")
    rows = list(store.audit_rows())
    assert len(rows) == 6 and rows[0]["prev_hash"] == audit.GENESIS
    assert all(r["key_id"] == KEYS.ids[0] for r in rows)
    verdict = audit.verify(rows, keys=KEYS)
    assert verdict.ok and verdict.count == 6, verdict.describe()


def test_an_edit_in_the_database_breaks_the_chain(engine):
    store = make_store(engine)
    for n in range(3):
        open_one(store, key=f"k{n}")
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE events SET actor = 'mallory' WHERE id = 2"))
    verdict = audit.verify(store.audit_rows(), keys=KEYS)
    assert not verdict.ok and verdict.broken_at == 2 and "do not match its hash" in verdict.problem


def test_the_outbox_is_written_with_the_event_and_claimed_once(engine):
    woken = []
    store = make_store(
        engine, subscribers=lambda kind: ("ops",) if kind in ("opened", "commented") else (), on_commit=lambda: woken.append(1)
    )
    item, _ = open_one(store)
    store.add_comment(item.id, "bob", "hi")
    store.transition(item.id, ("open",), "approved", actor="carol", event="approved")  # nobody subscribes
    assert store.delivery_backlog() == 2 and len(woken) == 2
    leases = {"ops": 60.0}
    (first,) = store.claim_deliveries(leases)  # one at a time per (webhook, request), in order
    assert first.event.kind == "opened" and first.request.id == item.id and first.title == "promote v2"
    assert store.claim_deliveries(leases) == []  # the next waits for the first
    assert store.delivery_done(first.delivery.id, 200)
    (second,) = store.claim_deliveries(leases)
    assert second.event.kind == "commented" and second.comment == "hi"
    assert store.delivery_done(second.delivery.id, 200)
    assert store.delivery_backlog() == 0 and store.claim_deliveries(leases) == []
