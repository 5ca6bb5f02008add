"""The store's scheduled and waiting applies on an in-memory SQLite database built by the
migrations: what a request waits for is recorded once per change, a release is one conditional
claim (approved and waiting → applying), and only a scheduled or waiting apply can be cancelled.
(Two instances racing on PostgreSQL: tests/integration/test_freezes.py.)"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from checkpoint.storage.entities import APPLYING, APPROVED, OPEN, WAITING, WITHDRAWN, EventKind, Waiting
from tests.support.stored import make_store, memory_engine, open_one

MONDAY = datetime(2026, 1, 12, 7, 0, tzinfo=UTC)
WEEKEND = Waiting("freeze", MONDAY, "weekend")


@pytest.fixture
def engine() -> Iterator[sa.Engine]:
    """One in-memory database (a single shared connection), migrated to head."""
    with memory_engine() as engine:
        yield engine


def approved(store, key: str = "k1"):
    request, _ = open_one(store, key=key)
    assert store.transition(request.id, (OPEN,), APPROVED, actor="bob", event=EventKind.APPROVED)
    return request.id


def kinds(store, request_id: int) -> list[str]:
    return [e.kind for e in store.get(request_id).events]


def test_waiting_is_recorded_once_per_change_and_filtered_as_waiting(engine):
    store = make_store(engine)
    request_id = approved(store)
    assert store.wait(request_id, WEEKEND, actor="bob", data={})
    assert not store.wait(request_id, WEEKEND, actor="checkpoint", data={})  # nothing new to record
    later = Waiting("freeze", datetime(2026, 1, 12, 11, 0, tzinfo=UTC), "monday")
    assert store.wait(request_id, later, actor="checkpoint", data={})
    assert kinds(store, request_id).count("waiting") == 2
    item = store.get(request_id)
    assert (item.state, item.waiting_for) == (APPROVED, later)
    assert [r.id for r in store.list_requests(state=WAITING)[0]] == [request_id]
    assert store.count(state=WAITING) == 1 and store.count(state=APPROVED) == 1
    assert [r.id for r in store.waiting_requests()] == [request_id]


def test_only_an_approved_request_waits(engine):
    store = make_store(engine)
    request, _ = open_one(store)
    assert not store.wait(request.id, WEEKEND, actor="bob", data={})
    assert store.get(request.id).waiting_for is None


def test_a_release_is_claimed_once(engine):
    store = make_store(engine)
    request_id = approved(store)
    assert not store.release(request_id, actor="checkpoint", data={})  # not waiting: nothing to release
    store.wait(request_id, WEEKEND, actor="bob", data={})
    assert store.release(request_id, actor="checkpoint", data={})
    assert not store.release(request_id, actor="checkpoint", data={})  # the second caller finds it gone
    item = store.get(request_id)
    assert (item.state, item.waiting_for) == (APPLYING, None)
    assert kinds(store, request_id)[-2:] == ["released", "applying"]
    released = [e for e in item.events if e.kind == "released"][0]
    assert released.data["waited_for"] == {"kind": "freeze", "until": MONDAY.isoformat(), "name": "weekend"}
    assert store.waiting_requests() == []


def test_only_a_scheduled_or_waiting_apply_is_cancelled(engine):
    store = make_store(engine)
    plain, _ = open_one(store, key="plain")
    assert not store.cancel(plain.id, actor="alice", reason="r", data={})  # open, nothing scheduled: withdraw it instead
    scheduled, _ = open_one(store, key="scheduled")
    assert store.schedule(scheduled.id, MONDAY, actor="alice", states=(OPEN,), data={"by": "author"})
    assert store.get(scheduled.id).apply_at == MONDAY
    assert store.cancel(scheduled.id, actor="alice", reason="called off", data={})
    assert (store.get(scheduled.id).state, store.get(scheduled.id).state_reason) == (WITHDRAWN, "called off")
    waiting = approved(store, key="waiting")
    store.wait(waiting, WEEKEND, actor="bob", data={})
    assert store.cancel(waiting, actor="bob", reason="called off", data={"waiting_for": WEEKEND.to_json()})
    item = store.get(waiting)
    assert (item.state, item.waiting_for) == (WITHDRAWN, None)
    assert kinds(store, waiting)[-1] == "cancelled"
    assert not store.cancel(waiting, actor="bob", reason="again", data={})
