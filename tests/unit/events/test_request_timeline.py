"""A request's events as its page's lines: a person's action and Checkpoint's steps after it on
one line, Checkpoint's own steps credited to Checkpoint, never to the person who set them off."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from checkpoint.events.request_timeline import SYSTEM, Step, lines
from checkpoint.storage.entities import Event, EventKind

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def _log(*steps: tuple[float, str, str, dict]) -> list[Event]:
    """Events of request 1 from (seconds after T0, kind, actor, data)."""
    return [
        Event(id=i, request_id=1, model_name="m", kind=kind, actor=actor, data=data, created_at=T0 + timedelta(seconds=s))
        for i, (s, kind, actor, data) in enumerate(steps, start=1)
    ]


def _read(found) -> list[tuple[str, str, str, tuple[str, ...]]]:
    return [(line.who, line.text, line.note, tuple(step.text for step in line.steps)) for line in found]


def test_one_approval_that_applies_reads_as_one_line():
    events = _log(
        (0, EventKind.OPENED, "alice", {}),
        (60, EventKind.REVIEW_APPROVED, "bob", {"comment": "ship it"}),
        (60, EventKind.APPROVED, "bob", {"reason": "approvals meet the policy"}),
        (60, EventKind.APPLYING, "bob", {}),
        (61, EventKind.APPLIED, "bob", {"result": "alias champion -> v3"}),
    )
    found = lines(reversed(events))  # order of the input does not matter: read by id
    assert _read(found) == [
        ("alice", "opened the request", "", ()),
        ("bob", "approved", "ship it", ("applied it",)),
    ]
    assert found[1].steps[0] == Step("applied it", "alias champion -> v3")
    assert found[1].event_ids == (2, 3, 4, 5)
    assert not any("applying" in text for _who, text, _note, steps in _read(found) for text in (text, *steps))


def test_steps_nobody_took_are_checkpoints():
    events = _log(
        (0, EventKind.OPENED, "alice", {}),
        (30, EventKind.REVIEW_APPROVED, "bob", {"comment": ""}),
        (30, EventKind.APPROVED, "bob", {"reason": "approvals meet the policy"}),
        (30, EventKind.WAITING, "bob", {"reason": "freeze 'demo-freeze' until 14:05 UTC"}),
        (900, EventKind.RELEASED, "checkpoint", {}),
        (900, EventKind.APPLYING, "checkpoint", {}),
        (901, EventKind.APPLIED, "checkpoint", {"result": "done"}),
        (7200, EventKind.APPROVAL_EXPIRED, "checkpoint", {"reviewer": "bob", "expire_after": "1w"}),
    )
    assert _read(lines(events)) == [
        ("alice", "opened the request", "", ()),
        ("bob", "approved", "", ("approved the request", "holds the apply back")),
        (SYSTEM, "released the apply: the wait is over", "", ("applied it",)),
        (SYSTEM, "expired bob's approval", "older than 1w", ()),  # hours later: a line of its own
    ]
    assert all(line.system for line in lines(events)[2:])


def test_a_failed_apply_a_rejection_and_a_break_glass():
    events = _log(
        (0, EventKind.OPENED, "alice", {}),
        (1, EventKind.CHECK_FAILED, "alice", {"check": "auc-gate", "status": "fail", "reason": "0.81 < 0.85"}),
        (50, EventKind.BREAK_GLASS, "lee", {"reason": "incident", "break_glass": True}),
        (50, EventKind.APPLYING, "lee", {}),
        (51, EventKind.APPLY_FAILED, "lee", {"error": "MLflow is down"}),
        (99, EventKind.REVIEW_REJECTED, "bob", {"comment": "no"}),
        (99, EventKind.REJECTED, "bob", {"reason": "rejected by bob"}),
    )
    assert _read(lines(events)) == [
        ("alice", "opened the request", "", ("check auc-gate is fail",)),
        ("lee", "broke the glass", "incident", ("could not apply it",)),
        ("bob", "rejected", "no", ("closed it as rejected",)),
    ]


def test_a_step_long_after_an_action_is_not_its_consequence():
    events = _log(
        (0, EventKind.REVIEW_APPROVED, "bob", {"comment": ""}),
        (3600, EventKind.CHECK_FAILED, "bob", {"check": "gate", "status": "error", "reason": "timeout"}),
    )
    assert _read(lines(events)) == [("bob", "approved", "", ()), (SYSTEM, "check gate is error", "timeout", ())]


def test_an_already_true_apply_and_a_status_from_ci():
    events = _log(
        (0, EventKind.STATUS_CHANGED, "ci", {"context": "ci/eval", "state": "failure", "description": "auc dropped"}),
        (5, EventKind.REVIEW_APPROVED, "bob", {"comment": ""}),
        (5, EventKind.APPROVED, "bob", {}),
        (5, EventKind.APPLYING, "bob", {}),
        (5, EventKind.APPLIED, "bob", {"already_true": True, "result": "already true"}),
    )
    assert _read(lines(events)) == [
        ("ci", "posted a status: ci/eval is failure", "auc dropped", ()),
        ("bob", "approved", "", ("found it already true in MLflow: nothing to apply",)),
    ]


def test_an_edit_says_what_changed():
    events = _log((0, EventKind.EDITED, "alice", {"fields": ["description", "title"], "title": "New"}))
    assert _read(lines(events)) == [("alice", "edited the request", "changed description, title", ())]


def test_no_events_no_lines():
    assert lines([]) == []


def test_a_finished_behavioural_diff_is_checkpoints_with_its_headline():
    summary = {"state": "done", "examples": {}, "datasets": [{"name": "holdout", "agreement": 0.5, "metrics": {}}]}
    events = _log((0, EventKind.OPENED, "alice", {}), (900, EventKind.BEHAVIOUR_FINISHED, "checkpoint", summary))
    assert _read(lines(events))[1] == (SYSTEM, "finished the behavioural diff", "done: holdout: agreement 50.0%", ())
