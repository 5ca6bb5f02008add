"""The workflow's questions that need no MLflow: where a stored request stands (approvals and the
required checks that hold it back) and who may review it, on an in-memory store."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.orm import sessionmaker
from sqlalchemy.pool import StaticPool

from checkpoint.identity import User
from checkpoint.registry import Registry
from checkpoint.review.changes import parse
from checkpoint.review.governance import Governance
from checkpoint.review.policy import Policy, Rule
from checkpoint.review.workflow import Workflow, WorkflowError
from checkpoint.storage import db
from checkpoint.storage.store import CheckResult, Store
from tests.support.clock import MovableClock

FRAUD = Rule(name="fraud", models=("fraud-*",), reviewers=("bob", "dave"), required_approvals=2)


@pytest.fixture(scope="module")
def workflow() -> Iterator[Workflow]:
    engine = db.make_engine("sqlite://", poolclass=StaticPool)
    db.upgrade(engine)
    store = Store(sessionmaker(engine, expire_on_commit=False))
    # The registry is never called here: nothing below reads or writes MLflow.
    yield Workflow(store, Registry("http://127.0.0.1:9"), Governance(), Policy(rules=(FRAUD,)))
    engine.dispose()


def opened(workflow: Workflow, model: str, key: str, approvers: tuple[str, ...] = ()):
    item, _ = workflow.store.open_request(
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
    for reviewer in approvers:
        workflow.store.add_review(item.id, reviewer, "approve", "", states=("open",))
    return workflow.store.get(item.id)


def result(name: str, status: str, required: bool = True) -> CheckResult:
    return CheckResult(1, name, "metric", required, status, "", "open", None)


@pytest.mark.parametrize(
    ("approvers", "results", "blocked", "ready", "line"),
    [
        ((), [], (), False, "0 of 2 approvals · awaiting bob, dave"),
        (("bob", "dave"), [], (), True, "2 of 2 approvals"),
        (("bob", "dave"), [result("auc", "pass"), result("sig", "fail", required=False)], (), True, "2 of 2 approvals"),
        (("bob", "dave"), [result("auc", "fail")], ("auc",), False, "2 of 2 approvals · blocked by check auc"),
        (
            ("bob", "dave"),
            [result("auc", "pending"), result("ci", "error")],
            ("auc", "ci"),
            False,
            "2 of 2 approvals · blocked by checks auc, ci",
        ),
        (("bob",), [result("auc", "error")], ("auc",), False, "1 of 2 approvals · awaiting dave · blocked by check auc"),
    ],
    ids=[
        "nothing-yet",
        "approved",
        "optional-failure-does-not-block",
        "required-failure-blocks",
        "pending-and-error-block",
        "both-missing",
    ],
)
def test_required_checks_hold_a_request_back(workflow, approvers, results, blocked, ready, line):
    request = opened(workflow, "fraud-v1", f"k-{line}-{len(results)}", approvers)
    status = workflow.status(request, results)
    assert (status.blocked_by, status.ready, status.line()) == (blocked, ready, line)


@pytest.mark.parametrize(
    ("user", "model", "reason"),
    [
        ("alice", "churn", "alice opened this request and rule 'default' does not allow approving your own request"),
        ("carol", "churn", None),
        ("carol", "fraud-v1", "carol is not a reviewer under rule 'fraud' (fraud: 2 approval(s) from bob, dave; not the author)"),
        (User("bob"), "fraud-v1", None),
    ],
)
def test_who_may_review_a_stored_request(workflow, user, model, reason):
    request = opened(workflow, model, f"r-{model}-{user}")
    assert workflow.refusal(user, request) == reason


WEEKLY = Rule(
    name="weekly", models=("weekly-*",), reviewers=("bob", "dave"), required_approvals=2, approvals_expire_after=timedelta(days=7)
)
START = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


@pytest.fixture
def timed() -> Iterator[tuple[Workflow, MovableClock]]:
    """A workflow and its store on one clock the test moves."""
    engine = db.make_engine("sqlite://", poolclass=StaticPool)
    db.upgrade(engine)
    clock = MovableClock(START)
    store = Store(sessionmaker(engine, expire_on_commit=False), clock=clock)
    yield Workflow(store, Registry("http://127.0.0.1:9"), Governance(), Policy(rules=(FRAUD, WEEKLY)), clock=clock), clock
    engine.dispose()


@pytest.mark.parametrize(
    ("dave_after", "moved", "met", "expired", "line"),
    [
        (timedelta(0), timedelta(days=6), True, (), "2 of 2 approvals"),
        (
            timedelta(0),
            timedelta(days=7),
            False,
            ("bob", "dave"),
            "0 of 2 approvals · awaiting bob, dave · approvals expired: bob, dave",
        ),
        (timedelta(days=3), timedelta(days=7), False, ("bob",), "1 of 2 approvals · awaiting bob · approval expired: bob"),
        (
            timedelta(days=3),
            timedelta(days=10),
            False,
            ("bob", "dave"),
            "0 of 2 approvals · awaiting bob, dave · approvals expired: bob, dave",
        ),
    ],
    ids=["both-young", "both-expired", "one-expired", "second-expired-later"],
)
def test_only_approvals_younger_than_the_rule_allows_count(timed, dave_after, moved, met, expired, line):
    workflow, clock = timed
    request = opened(workflow, "weekly-a", "k", ("bob",))
    clock.advance(dave_after)
    workflow.store.add_review(request.id, "dave", "approve", "", states=("open",))
    clock.advance(moved - dave_after)
    status = workflow.status(workflow.store.get(request.id), [])
    assert (status.met, status.expired, status.line()) == (met, expired, line)


def test_a_fresh_approval_by_the_same_reviewer_counts_again(timed):
    workflow, clock = timed
    request = opened(workflow, "weekly-b", "k", ("bob", "dave"))
    clock.advance(timedelta(days=8))
    workflow.store.add_review(request.id, "bob", "approve", "", states=("open",))
    status = workflow.status(workflow.store.get(request.id), [])
    assert (status.count, status.expired, status.line()) == (
        1,
        ("dave",),
        "1 of 2 approvals · awaiting dave · approval expired: dave",
    )


def test_without_the_key_approvals_never_expire(timed):
    workflow, clock = timed
    request = opened(workflow, "fraud-v9", "k", ("bob", "dave"))
    clock.advance(timedelta(days=3650))
    assert workflow.status(workflow.store.get(request.id), []).line() == "2 of 2 approvals"


def test_no_request_is_authored_by_anonymous(workflow):
    """Refused before MLflow is read (its address here answers nothing) and before anything is stored."""
    before = workflow.store.count()
    change = parse({"kind": "set_alias", "name": "fraud-detector", "alias": "champion", "version": "3"})
    with pytest.raises(WorkflowError, match="needs the name of who asks") as refused:
        workflow.open(change, User("anonymous"))
    assert (refused.value.status, refused.value.error_code) == (401, "UNAUTHENTICATED")
    assert workflow.store.count() == before
