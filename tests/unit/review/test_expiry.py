"""Approvals that expire, on an in-memory store under a clock the test moves: which approvals
count at a moment, and the background task recording each expiry once (only on undecided
requests, never again after a restart, never undone by a longer rule)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import sessionmaker

from checkpoint.review import expiry
from checkpoint.review.policy import Policy, Rule
from checkpoint.storage.entities import APPLIED, APPROVED, OPEN, EventKind
from checkpoint.storage.store import Store
from tests.support.clock import MovableClock
from tests.support.stored import memory_engine

START = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
WEEKLY = Rule(name="weekly", models=("fraud-*",), approvals_expire_after=timedelta(days=7))
HOURLY = Rule(name="hourly", models=("fast-*",), approvals_expire_after=timedelta(minutes=90))
POLICY = Policy(rules=(WEEKLY, HOURLY))


@pytest.fixture
def engine() -> Iterator[sa.Engine]:
    with memory_engine() as engine:
        yield engine


@pytest.fixture
def clock() -> MovableClock:
    return MovableClock(START)


@pytest.fixture
def store(engine, clock) -> Store:
    return Store(sessionmaker(engine, expire_on_commit=False), clock=clock)


def approved_request(store: Store, model: str, key: str, *reviewers: str) -> int:
    item, _ = store.open_request(
        author="alice",
        dedupe_key=key,
        event_data={},
        kind="set_alias",
        model_name=model,
        version="2",
        target="alias:champion",
        change={},
        title="t",
        challenger={},
        champion=None,
    )
    for reviewer in reviewers:
        assert store.add_review(item.id, reviewer, "approve", "", states=(OPEN,))
    return item.id


def expired_events(store: Store, request_id: int) -> list[dict]:
    return [e.data for e in store.get(request_id).events if e.kind == EventKind.APPROVAL_EXPIRED]


def test_an_approval_counts_until_its_rule_says_it_is_too_old(store, clock):
    request_id = approved_request(store, "fraud-a", "k1", "bob")
    clock.advance(timedelta(days=2))
    store.add_review(request_id, "dave", "approve", "", states=(OPEN,))
    request = store.get(request_id)
    assert [r.reviewer for r in expiry.counting(request, WEEKLY, clock.now())] == ["bob", "dave"]
    clock.advance(timedelta(days=5))  # bob's is exactly 7 days old: no longer counts
    assert [r.reviewer for r in expiry.counting(request, WEEKLY, clock.now())] == ["dave"]
    assert [expiry.expired(r, WEEKLY, clock.now()) for r in request.reviews] == [True, False]
    assert [r.reviewer for r in expiry.counting(request, Rule(), clock.now())] == ["bob", "dave"]  # no limit


def test_the_task_records_each_expiry_once_with_its_event(store, clock, engine):
    request_id = approved_request(store, "fraud-a", "k1", "bob", "dave")
    task = expiry.Expiry(store, POLICY, clock)
    clock.advance(timedelta(days=7) - timedelta(minutes=1))
    assert task.run() == []
    clock.advance(timedelta(minutes=1))
    first = task.run()
    assert len(first) == 2
    assert task.run() == [] and expiry.Expiry(store, POLICY, clock).run() == []  # a restarted process too
    request = store.get(request_id)
    assert request.approvals == () and all(r.expired_at == clock.now() for r in request.reviews)
    events = expired_events(store, request_id)
    assert [(e["reviewer"], e["rule"], e["expire_after"]) for e in events] == [("bob", "weekly", "1w"), ("dave", "weekly", "1w")]
    assert events[0]["approved_at"] == START.isoformat() and {e["review_id"] for e in events} == set(first)
    stamps = [e.created_at for e in store.get(request_id).events if e.kind == EventKind.APPROVAL_EXPIRED]
    assert stamps == [clock.now(), clock.now()]  # stamped by the injected clock, not the machine's


def test_each_rule_expires_its_own_approvals(store, clock):
    fast = approved_request(store, "fast-a", "k1", "bob")
    slow = approved_request(store, "fraud-a", "k2", "bob")
    unlimited = approved_request(store, "churn", "k3", "bob")  # the default rule: never expires
    clock.advance(timedelta(hours=2))
    assert len(expiry.Expiry(store, POLICY, clock).run()) == 1
    assert expired_events(store, fast) and not expired_events(store, slow)
    clock.advance(timedelta(days=400))
    assert len(expiry.Expiry(store, POLICY, clock).run()) == 1
    assert expired_events(store, slow) and not expired_events(store, unlimited)


def test_decided_requests_and_dismissed_approvals_are_left_alone(store, clock):
    applied = approved_request(store, "fraud-a", "k1", "bob")
    assert store.transition(applied, (OPEN,), APPROVED, actor="x", event=EventKind.APPROVED)
    assert store.transition(applied, (APPROVED,), APPLIED, actor="x", event=EventKind.APPLIED)
    dismissed = approved_request(store, "fraud-b", "k2", "bob")
    store.dismiss_reviews(dismissed, "the challenger moved", "checkpoint")
    rejected_only = approved_request(store, "fraud-c", "k3")
    store.add_review(rejected_only, "bob", "reject", "", states=(OPEN,))
    waiting = approved_request(store, "fraud-d", "k4", "bob")
    assert store.transition(waiting, (OPEN,), APPROVED, actor="x", event=EventKind.APPROVED)  # e.g. held by a freeze
    clock.advance(timedelta(days=8))
    recorded = expiry.Expiry(store, POLICY, clock).run()
    assert len(recorded) == 1 and expired_events(store, waiting)  # approved, waiting to apply: counted
    for request_id in (applied, dismissed, rejected_only):
        assert expired_events(store, request_id) == []


def test_a_recorded_expiry_stands_when_the_rule_later_allows_longer(store, clock):
    request_id = approved_request(store, "fraud-a", "k1", "bob")
    clock.advance(timedelta(days=7))
    assert expiry.Expiry(store, POLICY, clock).run()
    longer = Rule(name="weekly", models=("fraud-*",), approvals_expire_after=timedelta(days=30))
    request = store.get(request_id)
    assert expiry.counting(request, longer, clock.now()) == ()
    assert expiry.expired(request.reviews[0], longer, clock.now())


def test_the_claim_is_conditional(store, clock):
    """Two workers seeing the same candidate: the second's conditional UPDATE finds it taken."""
    request_id = approved_request(store, "fraud-a", "k1", "bob")
    clock.advance(timedelta(days=7))
    ((_, review),) = store.approvals_before(clock.now() - timedelta(days=7), expiry.UNDECIDED)
    claim = {"approved_before": clock.now() - timedelta(days=7), "states": expiry.UNDECIDED, "data": {"rule": "weekly"}}
    assert store.expire_approval(review.id, **claim) is True
    assert store.expire_approval(review.id, **claim) is False
    assert len(expired_events(store, request_id)) == 1
    assert store.approvals_before(clock.now(), expiry.UNDECIDED) == []


def test_a_younger_approval_is_not_claimed_even_if_asked(store, clock):
    approved_request(store, "fraud-a", "k1", "bob")
    clock.advance(timedelta(days=6))
    ((_, review),) = store.approvals_before(clock.now(), expiry.UNDECIDED)
    cutoff = clock.now() - timedelta(days=7)
    assert store.expire_approval(review.id, approved_before=cutoff, states=expiry.UNDECIDED, data={}) is False


def test_the_standing_the_page_and_the_api_show(store, clock):
    request_id = approved_request(store, "fraud-a", "k1", "bob")
    store.add_review(request_id, "dave", "reject", "", states=(OPEN,))
    bob, dave = store.get(request_id).reviews
    assert expiry.standing(bob, WEEKLY, clock.now()).to_json() == {
        "expired": False,
        "expires_at": (START + timedelta(days=7)).isoformat(),
    }
    assert expiry.standing(dave, WEEKLY, clock.now()).to_json() == {"expired": False, "expires_at": None}
    clock.advance(timedelta(days=7))
    assert expiry.standing(bob, WEEKLY, clock.now()).expired is True
    assert expiry.standing(bob, Rule(), clock.now()) == expiry.Standing(False, None)  # a rule without the key
    expiry.Expiry(store, POLICY, clock).run()
    clock.advance(timedelta(days=1))
    (recorded, _) = store.get(request_id).reviews
    shown = expiry.standing(recorded, Rule(), clock.now())  # recorded expired stands under any rule
    assert shown == expiry.Standing(True, START + timedelta(days=7))
    store.dismiss_reviews(request_id, "moved", "checkpoint")
    (dismissed, _) = store.get(request_id).reviews
    assert expiry.standing(dismissed, WEEKLY, clock.now()) == expiry.Standing(False, None)
